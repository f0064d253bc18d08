"""The napari-cvdm command line."""

import subprocess
import sys

import numpy as np
import pytest

from napari_cvdm.cli import main
from napari_cvdm.data.tiff import read_tiff


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "napari_cvdm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("demo", "toy", "simulate", "train", "predict", "evaluate"):
        assert command in out.stdout


def test_console_script_is_installed():
    out = subprocess.run(["napari-cvdm", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "napari-cvdm" in out.stdout


def test_toy_writes_mean_and_std(tmp_path, capsys):
    rc = main(["toy", "--output-dir", str(tmp_path), "--seconds", "2", "--samples", "2", "--steps", "2"])
    assert rc == 0
    assert "PSNR of the CVDM mean" in capsys.readouterr().out
    for name in ("input", "target", "mean", "std"):
        img = read_tiff(tmp_path / f"toy_{name}.tif").data
        assert img.shape == (32, 32) and img.dtype == np.float32 and np.isfinite(img).all()


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as info:
        main(["toy", "--samples", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
