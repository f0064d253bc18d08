"""The core imports no GUI toolkit."""

import subprocess
import sys

CORE_MODULES = [
    "napari_cvdm",
    "napari_cvdm.diffusion",
    "napari_cvdm.data.tiff",
    "napari_cvdm._reader",
    "napari_cvdm.cli",
    "napari_cvdm.toy",
]


def test_core_leaves_qt_napari_and_magicgui_unimported():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = [m for m in ('qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the core: {out.stdout.strip()}"
