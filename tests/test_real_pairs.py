"""Real widefield images scored against a reference of another modality: the pair list, the scores and the
classical deconvolution tuned on the pair."""

import json

import numpy as np
import pytest

from conftest import untrained_model_file
from napari_cvdm.cli import main
from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene
from napari_cvdm.data.tiff import write_tiff
from napari_cvdm.jobs.real_pairs import frc_resolution, read_real_pairs, real_scores, tuned_richardson_lucy
from napari_cvdm.physics.widefield import WidefieldOptics


def _pair_folder(tmp_path, zoom=4):
    """A simulated widefield image and its SIM-like target drawn on a grid ``zoom`` times finer (pixel-repeated)."""
    pair = simulate_sr_scene("er", (96, 96), SRConditions(300.0, 0.1), np.random.default_rng(0), WidefieldOptics())
    fine = np.kron(pair.target, np.ones((zoom // 2, zoom // 2)))
    write_tiff(tmp_path / "wf.tif", pair.input)
    write_tiff(tmp_path / "ref.tif", fine)
    spec = {"pairs": [{"name": "er", "input": "wf.tif", "reference": "ref.tif", "reference_zoom": zoom,
                       "reference_blur_px": 0.0, "optics": {"pixel_um": 0.0626}}]}  # fmt: skip
    (tmp_path / "pairs.json").write_text(json.dumps(spec))
    return pair


def test_a_reference_on_a_finer_grid_is_brought_to_twice_the_inputs(tmp_path):
    pair = _pair_folder(tmp_path)
    (read,) = read_real_pairs(tmp_path / "pairs.json")
    assert read.input.shape == (96, 96) and read.reference.shape == (192, 192)
    np.testing.assert_allclose(read.reference, pair.target, rtol=1e-5, atol=1e-3)
    assert read.optics == {"pixel_um": 0.0626}


def test_a_reference_made_through_a_filter_scores_each_result_through_the_same_filter(tmp_path):
    """A Wiener SIM reference is smoother than what the model aims at; given its filter, the aim itself matches the
    reference exactly, and a result as smooth as the reference gains nothing from it."""
    pair = _pair_folder(tmp_path, zoom=2)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(192), np.fft.fftfreq(192), indexing="ij"))
    damping = np.exp(-((f / 0.15) ** 2))  # the reference's own filter
    smooth = np.fft.ifft2(np.fft.fft2(pair.target) * damping).real
    write_tiff(tmp_path / "ref.tif", smooth)
    write_tiff(tmp_path / "transfer.tif", damping)
    spec = json.loads((tmp_path / "pairs.json").read_text())
    spec["pairs"][0]["reference_transfer"] = "transfer.tif"
    (tmp_path / "pairs.json").write_text(json.dumps(spec))
    (read,) = read_real_pairs(tmp_path / "pairs.json")
    aim = real_scores(read.as_reference_sees(pair.target), None, read.reference)["psnr"]
    unfiltered = real_scores(pair.target, None, read.reference)["psnr"]
    assert aim > 60 > unfiltered
    spec["pairs"][0]["reference_transfer"] = "wf.tif"  # the wrong shape
    (tmp_path / "pairs.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="the reference's map is"):
        read_real_pairs(tmp_path / "pairs.json")


def test_the_reference_itself_scores_perfectly_and_an_unrelated_image_does_not():
    rng = np.random.default_rng(0)
    ref = np.kron(rng.random((40, 40)), np.ones((4, 4)))
    same = real_scores(3 * ref + 1, np.full(ref.shape, 0.01), ref)  # an affine copy
    assert same["band_corr"] == pytest.approx(1.0) and same["psnr"] > 100 and same["within_2sigma"] == 1.0
    other = real_scores(rng.random(ref.shape), None, ref)
    assert abs(other["band_corr"]) < 0.1 and "within_2sigma" not in other


def test_the_references_own_noise_joins_the_std_in_the_coverage():
    rng = np.random.default_rng(2)
    truth = np.kron(rng.random((40, 40)), np.ones((4, 4)))
    noisy_ref = truth + 0.1 * rng.standard_normal(truth.shape)
    std = 0.01 * (1 + rng.random(truth.shape))
    estimate = truth + std * rng.standard_normal(truth.shape)
    alone = real_scores(estimate, std, noisy_ref)
    joined = real_scores(estimate, std, noisy_ref, np.full(truth.shape, 0.1))
    assert alone["within_2sigma"] < 0.3 and joined["within_2sigma"] > 0.9
    assert joined["within_2sigma_own"] == alone["within_2sigma"] and joined["rho"] == alone["rho"]


def test_the_frc_finds_the_resolution_two_images_share():
    rng = np.random.default_rng(1)
    from scipy.ndimage import gaussian_filter

    scene = gaussian_filter(rng.standard_normal((128, 128)), 1.0)
    a, b = scene + 0.05 * rng.standard_normal(scene.shape), scene + 0.05 * rng.standard_normal(scene.shape)
    sharp = frc_resolution(a, b)
    blurred = frc_resolution(gaussian_filter(a, 3.0), b)
    assert 2.0 <= sharp < blurred


def test_richardson_lucy_tuned_on_the_pair_is_at_least_as_good_as_with_the_stated_optics(tmp_path):
    from napari_cvdm.physics.widefield import richardson_lucy_sr

    _pair_folder(tmp_path)
    (pair,) = read_real_pairs(tmp_path / "pairs.json")
    tuned, chosen = tuned_richardson_lucy(pair, WidefieldOptics())
    stated = real_scores(richardson_lucy_sr(pair.input, WidefieldOptics(), 5), None, pair.reference)["psnr"]
    assert real_scores(tuned, None, pair.reference)["psnr"] >= stated and "iterations" in chosen


def test_evaluate_real_prints_a_row_per_method_and_pair(tmp_path, capsys):
    _pair_folder(tmp_path)
    model = untrained_model_file(tmp_path, "sr")
    out = tmp_path / "rows.json"
    args = ["evaluate-real", "--model", str(model), "--pairs", str(tmp_path / "pairs.json"), "--json", str(out)]
    assert main([*args, "--samples", "2", "--steps", "1"]) == 0
    table = capsys.readouterr().out
    assert "tuned on the pair" in table and "bicubic" in table
    assert len(json.loads(out.read_text())) == 5
