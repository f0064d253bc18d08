"""The core install (no extras) is the API, the command line and batch use: it needs no Qt, napari or magicgui."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

import numpy as np
import tifffile

GUI = ("napari", "npe2", "qtpy", "pyqt", "pyside", "magicgui", "pyqtgraph", "vispy")

BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class NoGui(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].lower() in {blocked!r}:
            raise ImportError(f"{{name}} is not installed (core install)")
        return None

sys.meta_path.insert(0, NoGui())
from napari_cvdm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_core_dependencies_name_no_gui_package():
    """As the installed package states them (what pip resolves): the requirements without an extra."""
    found = [r.lower() for r in requires("napari-cvdm") or []]
    core = [r for r in found if "extra ==" not in r]
    assert core and not [r for r in core if r.startswith(GUI)], core
    assert any(r.startswith("napari>") and 'extra == "napari"' in r for r in found)


def test_predict_runs_on_a_tiff_with_no_gui_package_importable(tmp_path):
    image = np.random.default_rng(0).poisson(50, (32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    blocker = BLOCKER.format(blocked=set(GUI) | {"pyqt6", "pyqt5", "pyside6", "pyside2"})
    for model in ("bicubic", "sr"):
        args = [str(tmp_path / "cells.tif"), "--model", model, "--samples", "2", "--steps", "2"]
        run = subprocess.run(
            [sys.executable, "-c", blocker, "predict", *args, "--output-dir", str(tmp_path / model)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert (tmp_path / model / "cells_mean.tif").exists()
