"""What an image's file or layer states of its optics — the pixel size, the spacing of brightfield planes — is taken
by a model given no optics, and a run whose optics contradict it says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from conftest import untrained_model_file
from napari_cvdm.cli import main
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.data.simulate_qpi import crop_of_larger_field, phase_map
from napari_cvdm.data.tiff import read_tiff, write_tiff
from napari_cvdm.inference.file_optics import stated_changes
from napari_cvdm.inference.layers import layer_plane_spacing
from napari_cvdm.physics.fresnel import QPIOptics, defocus_stack, phase_object
from napari_cvdm.tasks import get_task
from napari_cvdm.tasks.records import CheckedImage, outer_defocus


def test_the_defocus_of_the_outer_planes_follows_from_their_spacing():
    assert outer_defocus(2, 2.0) == 1.0 and outer_defocus(3, 2.0) == 2.0 and outer_defocus(5, 0.5) == 1.0
    assert outer_defocus(3, None) is None and outer_defocus(3, 0.0) is None
    assert layer_plane_spacing((2.0, 0.21, 0.21), ("µm", "µm", "µm"), plane_axis=True) == 2.0
    assert layer_plane_spacing((2.0, 0.21, 0.21), ("pixel", "µm", "µm"), plane_axis=True) is None
    assert layer_plane_spacing((2.0, 0.21, 0.21), ("µm", "µm", "µm"), plane_axis=False) is None  # a time-lapse


def test_a_spacing_of_no_unit_is_no_length(tmp_path):
    planes = np.ones((3, 16, 16), np.float32)
    tifffile.imwrite(tmp_path / "bare.tif", planes, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0})
    assert read_tiff(tmp_path / "bare.tif").z_spacing_um is None
    assert read_tiff(write_tiff(tmp_path / "um.tif", planes, 0.3, axes="ZYX", z_spacing_um=2.0)).z_spacing_um == 2.0
    # channels are no focal planes, whatever spacing ImageJ kept (the NEUBIAS HeLa channels carry 0.5 µm)
    meta = {"axes": "CYX", "spacing": 0.5, "unit": "um"}
    tifffile.imwrite(tmp_path / "channels.tif", planes, imagej=True, resolution=(1 / 0.13, 1 / 0.13), metadata=meta)
    assert read_tiff(tmp_path / "channels.tif").z_spacing_um is None


def test_what_a_model_given_no_optics_takes_from_the_file():
    sr, qpi = get_task("sr"), get_task("qpi")

    def image(pixel, dz=None):
        return CheckedImage(np.zeros((1, 2, 16, 16)), True, pixel, dz)

    assert stated_changes(sr, image((0.07, 0.07)), sr.default_optics()) == {}  # 1.1×: the model's own optics stand
    assert stated_changes(sr, image((0.1, 0.1)), sr.default_optics()) == {"pixel_um": 0.1}
    assert stated_changes(sr, image(None), sr.default_optics()) == {}
    own = qpi.default_optics()  # the Fresnel number needs both: one alone is not taken
    assert stated_changes(qpi, image((0.64, 0.64)), own) == {} and stated_changes(qpi, image(None, 2.0), own) == {}
    assert stated_changes(qpi, image((0.22, 0.22), 1.0), own) == {"pixel_um": 0.22}  # nothing estimated: any change
    assert stated_changes(qpi, image((0.21, 0.21), 1.01), own) == {}  # metadata rounding
    assert stated_changes(qpi, image((0.3, 0.3), 2.0), own) == {"pixel_um": 0.3, "dz_um": 2.0}


def test_optics_the_user_gave_are_completed_from_the_file_never_overridden():
    sr, qpi = get_task("sr"), get_task("qpi")

    def image(pixel, dz=None):
        return CheckedImage(np.zeros((1, 2, 16, 16)), True, pixel, dz)

    own = qpi.default_optics()
    assert stated_changes(qpi, image((0.3, 0.3)), own, {"dz_um"}) == {"pixel_um": 0.3}  # dz given: pixel from file
    assert stated_changes(qpi, image(None, 2.0), own, {"pixel_um"}) == {"dz_um": 2.0}
    assert stated_changes(qpi, image((0.3, 0.3), 2.0), own, {"wavelength_um"}) == {"pixel_um": 0.3, "dz_um": 2.0}
    assert stated_changes(qpi, image((0.3, 0.3), 2.0), own, {"pixel_um", "dz_um"}) == {}  # the user's win
    assert stated_changes(qpi, image((0.3, 0.3)), own, {"wavelength_um"}) == {}  # the Fresnel number needs both
    # sr given its NA: nothing is read off the image, so a pixel size 1.1× the model's is taken as stated
    assert stated_changes(sr, image((0.07, 0.07)), sr.default_optics(), {"na"}) == {"pixel_um": 0.07}


def _stack_file(path, side: int = 64) -> tuple[object, np.ndarray]:
    """A 3-plane stack at (−2, 0, +2) µm (0.3 µm pixels, 550 nm) whose file states its pixel size and plane spacing."""
    optics, rng = QPIOptics(wavelength_um=0.55, pixel_um=0.3, dz_um=2.0), np.random.default_rng(3)
    big, c = crop_of_larger_field((side, side), optics)
    phase = phase_map("cells", big, rng, optics)
    planes = defocus_stack(phase_object(torch.from_numpy(phase)), (-2.0, 0.0, 2.0), 0.55, 0.3).numpy()
    planes = planes[:, c : c + side, c : c + side] + rng.normal(0, 0.005, (3, side, side))
    truth = phase[c : c + side, c : c + side]
    return write_tiff(path, planes.astype(np.float32), 0.3, axes="ZYX", z_spacing_um=2.0), truth


def test_a_stack_whose_file_states_its_plane_spacing_is_run_at_that_defocus(tmp_path, capsys):
    path, truth = _stack_file(tmp_path / "stack.tif")
    out = tmp_path / "out"
    common = ["predict", str(path), "--output-dir", str(out), "--wavelength", "0.55", "--pixel-size", "0.3"]
    assert main([*common, "--model", "tie"]) == 0  # the method's own defocus, ±1 µm: the phase twice too strong
    err = capsys.readouterr().err
    assert "puts them at ±2 µm, but this run took ±1 µm" in err and "--dz 2" in err
    wrong = qpi_scores(tifffile.imread(out / "stack_mean.tif"), truth).psnr
    assert main([*common, "--model", "tie", "--dz", "2"]) == 0
    assert "puts them at" not in capsys.readouterr().err
    assert qpi_scores(tifffile.imread(out / "stack_mean.tif"), truth).psnr > wrong + 3
    tiny = untrained_model_file(tmp_path, "qpi")  # given no optics: it runs at the file's
    assert main(["predict", str(path), "--output-dir", str(out), "--model", str(tiny), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "pixels of 300.0 nm (the model's: pixels of 210.0 nm)" in err
    assert "planes at ±2 µm (the model's: planes at ±1 µm)" in err and "puts them at" not in err
    assert tifffile.imread(out / "stack_mean.tif").shape == truth.shape
    made = json.loads(read_tiff(out / "stack_mean.tif").info)  # the optics it ran at, not the model's own
    assert "pixel size (µm) 0.3" in made["optics"] and "defocus dz (µm) 2" in made["optics"]


def test_optics_far_beyond_what_a_model_covers_are_refused_with_what_to_check(tmp_path):
    from napari_cvdm.inference.models import load_model
    from napari_cvdm.inference.optics_match import ModelAtOptics, at_optics

    qpi, sr = (load_model(untrained_model_file(tmp_path, t)) for t in ("qpi", "sr"))
    with pytest.raises(ValueError, match=r"defocus dz \(µm\) 0.01: the model would have to see the image enlarged 10×"):
        at_optics(qpi, {"dz_um": 0.01})  # 10×: a hundred times the pixels, far from anything it has seen
    with pytest.raises(ValueError, match="shrunk 0.35×.*half the spacing of a pair.*a classical method"):
        at_optics(qpi, {"dz_um": 8.0})
    assert isinstance(at_optics(qpi, {"dz_um": 4.0}), ModelAtOptics)  # 0.5×: beyond what it covers, still run
    corner = {"pixel_um": 0.13, "na": 1.49, "wavelength_um": 0.45}  # the stated range's far corner (2.8×) runs
    assert isinstance(at_optics(sr, corner), ModelAtOptics)


def test_a_file_whose_plane_spacing_is_far_off_runs_the_model_at_its_own_optics_and_says_why(tmp_path, capsys):
    planes = np.random.default_rng(0).normal(1.0, 0.01, (3, 64, 64)).astype(np.float32)
    path = write_tiff(tmp_path / "stack.tif", planes, 0.21, axes="ZYX", z_spacing_um=0.01)  # mm taken for µm?
    tiny, out = untrained_model_file(tmp_path, "qpi"), tmp_path / "out"
    assert main(["predict", str(path), "--output-dir", str(out), "--model", str(tiny), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "states planes at ±0.01 µm (the model's: planes at ±1 µm), but the model would have to see" in err
    assert "a unit in the file is probably wrong, so the model ran at its own optics" in err
    made = json.loads(read_tiff(out / "stack_mean.tif").info)
    assert "defocus dz (µm) 1" in made["optics"]
    code = main(["predict", str(path), "--output-dir", str(out), "--model", str(tiny), "--dz", "0.01"])
    assert code != 0 and "enlarged 10×" in capsys.readouterr().err  # given by the user: refused at once


def test_a_stack_run_with_only_its_wavelength_given_takes_pixel_size_and_defocus_from_its_file(tmp_path, capsys):
    path, truth = _stack_file(tmp_path / "stack.tif")
    tiny, out = untrained_model_file(tmp_path, "qpi"), tmp_path / "out"
    args = [
        "predict",
        str(path),
        "--output-dir",
        str(out),
        "--model",
        str(tiny),
        "--steps",
        "1",
        "--wavelength",
        "0.55",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "pixels of 300.0 nm" in err and "planes at ±2 µm" in err and "puts them at" not in err
    made = json.loads(read_tiff(out / "stack_mean.tif").info)
    assert all(f in made["optics"] for f in ("wavelength (µm) 0.55", "pixel size (µm) 0.3", "defocus dz (µm) 2"))


def test_the_note_before_a_run_says_what_the_layer_gives_and_what_is_missing():
    from napari_cvdm.inference.file_optics import stated_note, stated_values

    sr, qpi = get_task("sr"), get_task("qpi")
    o, q = sr.default_optics(), qpi.default_optics()
    assert "no pixel size" in stated_note(sr, stated_values(None, None, o), o, {})
    assert stated_note(sr, stated_values(0.1325, None, o), o, {}).endswith(
        "the model runs at them, its NA read off the image."
    )
    assert "close enough to the optics above: they run" in stated_note(sr, stated_values(0.065, None, o), o, {})
    said = stated_note(sr, stated_values(0.1, None, o), o, {"pixel_um": 0.09})
    assert "the values you set above win" in said
    lacking = stated_note(qpi, stated_values(0.64, None, q), q, {})  # the real ±10 µm pair's file: no spacing
    assert "but no plane spacing: set the defocus dz (and the wavelength) above and the layer's pixel size" in lacking
    # what will happen where the optics are out of the model's reach
    unit = stated_note(qpi, stated_values(0.21, 0.01, q), q, {})  # a spacing in mm taken for µm?
    assert "but the model would have to see the image enlarged 10×" in unit and "runs without it" in unit
    refused = stated_note(qpi, stated_values(None, None, q), q, {"dz_um": 0.01})
    assert refused.startswith("The optics above are out of the model's reach") and "will be refused" in refused
    # the real ±10 µm pair: dz 10 µm alone is out of reach at the model's pixels, with the layer's 0.64 µm it is not
    with_layer = stated_note(qpi, stated_values(0.64, None, q), q, {"dz_um": 10.0, "wavelength_um": 0.532})
    assert with_layer == "The layer states pixels of 640.0 nm: the model runs at them, the rest as above."


def test_optics_given_are_judged_with_what_the_file_adds_to_them(tmp_path, capsys):
    """The real ±10 µm pair's file states 0.64 µm pixels and no spacing: given --dz 10 alone, the model's 0.21 µm
    pixels would shrink the pair 0.31× (refused); with the file's pixels it is 0.94×, and runs."""
    planes = np.random.default_rng(0).normal(1.0, 0.01, (2, 64, 64)).astype(np.float32)
    stated = write_tiff(tmp_path / "pair.tif", planes, 0.64, axes="CYX")
    bare = write_tiff(tmp_path / "bare.tif", planes, None, axes="CYX")
    tiny, out = untrained_model_file(tmp_path, "qpi"), tmp_path / "out"
    options = ["--output-dir", str(out), "--model", str(tiny), "--steps", "1", "--dz", "10", "--wavelength", "0.532"]
    assert main(["predict", str(stated), *options]) == 0
    assert "pixels of 640.0 nm (the model's: pixels of 210.0 nm)" in capsys.readouterr().err
    assert "pixel size (µm) 0.64" in json.loads(read_tiff(out / "pair_mean.tif").info)["optics"]
    assert main(["predict", str(bare), *options]) != 0
    assert "shrunk 0.31×" in capsys.readouterr().err
