"""Issue 16: a calibrated std, and warnings for inputs unlike the training data."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest

from napari_cvdm.data.simulate import simulate_sr_pair
from napari_cvdm.inference.consistency import check_pixel_size
from napari_cvdm.inference.predict import Prediction
from napari_cvdm.inference.uncertainty import (
    GAUSSIAN_COVERAGE,
    StdCalibration,
    calibrate_prediction,
    coverage,
    reliability,
    smoothed_std,
)
from napari_cvdm.jobs.std_fit import SMOOTHING_FACTORS, fit_calibration, fit_scale
from napari_cvdm.physics.noise import band_noise_level_function, photon_level
from napari_cvdm.physics.widefield import WidefieldOptics, out_of_band_ratio
from napari_cvdm.tasks import get_task


def _synthetic(scale: float, n_images: int = 6, seed: int = 0):
    """Std maps spanning 20× and errors drawn with ``scale`` × that std (Gaussian), in units of 1."""
    rng = np.random.default_rng(seed)
    stds = [np.exp(rng.uniform(-1.5, 1.5, (64, 64))) for _ in range(n_images)]
    errors = [scale * s * rng.standard_normal(s.shape) for s in stds]
    return stds, errors


@pytest.mark.parametrize("true_scale", [0.4, 3.0])
def test_calibration_reaches_95_percent_with_a_known_error_scale(true_scale):
    stds, errors = _synthetic(true_scale)
    cal = fit_calibration(stds, errors, [1.0] * len(stds))
    assert cal.scale == pytest.approx(true_scale, rel=0.1)
    # held-out draws of the same process: the calibrated std covers 95 % ± 3 %, the raw one does not
    test_stds, test_errors = _synthetic(true_scale, seed=1)
    after = np.mean([coverage(cal.apply(s, 1.0), e, 2) for s, e in zip(test_stds, test_errors)])
    before = np.mean([coverage(s, e, 1) for s, e in zip(test_stds, test_errors)])
    assert after == pytest.approx(GAUSSIAN_COVERAGE[2], abs=0.03)
    assert abs(before - GAUSSIAN_COVERAGE[1]) > 0.2
    assert cal.fitted_on["coverage_after"]["1sigma"] == pytest.approx(GAUSSIAN_COVERAGE[1], abs=0.03)


def test_calibration_is_a_no_op_on_a_calibrated_std():
    stds, errors = _synthetic(1.0)
    cal = fit_calibration(stds, errors, [1.0] * len(stds))
    assert cal.scale == pytest.approx(1.0, abs=0.05) and cal.floor < 0.01
    np.testing.assert_allclose(cal.apply(stds[0], 1.0), stds[0], rtol=0.06)


def test_calibration_floor_covers_errors_the_samples_do_not_show():
    rng = np.random.default_rng(3)
    stds = [np.where(rng.random((64, 64)) < 0.5, 0.0, 1.0) for _ in range(4)]  # half the pixels: no spread
    errors = [rng.standard_normal(s.shape) * np.maximum(s, 0.3) for s in stds]
    cal = fit_calibration(stds, errors, [1.0] * 4)
    assert cal.floor > 0.1
    assert coverage(cal.apply(stds[0], 1.0), errors[0], 2) == pytest.approx(0.95, abs=0.04)


def test_calibration_floor_scales_with_each_images_unit():
    cal = StdCalibration(scale=2.0, floor=0.1)
    np.testing.assert_allclose(cal.apply(np.zeros((2, 2)), 50.0), 5.0)
    np.testing.assert_allclose(cal.apply(np.full((2, 2), 3.0), 0.0), 6.0)
    with pytest.raises(ValueError, match="positive"):
        StdCalibration(scale=0.0)


def test_reliability_of_a_calibrated_gaussian_is_the_diagonal():
    stds, errors = _synthetic(1.0)
    levels = (0.5, 0.9, 0.99)
    observed = reliability(
        np.concatenate([s.ravel() for s in stds]), np.concatenate([e.ravel() for e in errors]), levels
    )
    np.testing.assert_allclose(observed, levels, atol=0.01)


def _smooth_scale_noisy_spread(seed: int, n_samples: int = 8):
    """An error scale that varies over ~10 px, errors drawn with it, and the spread of ``n_samples`` draws of
    the same process (±27 % per pixel at 8 samples) as the std a model would report."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((96, 96)), 6)
    scale = np.exp(0.5 * field / field.std())  # 68 % of pixels within 0.6–1.6× the median scale
    spread = (scale * rng.standard_normal((n_samples, 96, 96))).std(0, ddof=1)
    return spread, scale * rng.standard_normal((96, 96))


def test_averaging_the_variance_over_the_resolution_ranks_pixels_by_their_error_better():
    from scipy.stats import spearmanr

    spread, error = _smooth_scale_noisy_spread(0)
    assert np.array_equal(smoothed_std(spread, 0.0), spread)
    rho = [spearmanr(smoothed_std(spread, r).ravel(), np.abs(error).ravel()).statistic for r in (0.0, 2.0)]
    assert rho[1] > rho[0] + 0.03  # 0.39 → 0.45
    stds, errors = zip(*(_smooth_scale_noisy_spread(seed) for seed in range(1, 4)))
    cal = fit_calibration(stds, errors, [1.0] * 3, smoothing=2.0)
    assert cal.smoothing == 2.0 and cal.scale == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(cal.apply(spread, 1.0), cal.scale * smoothed_std(spread, 2.0), rtol=1e-5)
    assert coverage(cal.apply(spread, 1.0), error, 2) == pytest.approx(0.95, abs=0.03)
    stack = np.stack([spread, 2 * spread])  # planes are smoothed each on its own
    np.testing.assert_allclose(cal.apply(stack, 1.0)[1], 2 * cal.apply(spread, 1.0), rtol=1e-5)


def test_the_sr_error_ignores_the_background_level_and_the_smoothing_follows_each_tasks_resolution():
    task = get_task("sr")
    rng = np.random.default_rng(0)
    estimate, target = rng.random((16, 16)), rng.random((16, 16))
    np.testing.assert_allclose(task.error(estimate + 40.0, target), task.error(estimate, target), atol=1e-12)
    assert task.std_smoothing(WidefieldOptics()) == pytest.approx(1.35, abs=0.05)
    assert task.std_smoothing(WidefieldOptics(pixel_um=2 * WidefieldOptics().pixel_um)) < 0.7
    qpi, optics = get_task("qpi"), get_task("qpi").optics_class()
    assert qpi.std_smoothing(optics) == pytest.approx(3.44, abs=0.01)  # the Fresnel length √(λ·dz), pixels
    farther = dataclasses_replace(optics, dz_um=4 * optics.dz_um)
    assert qpi.std_smoothing(farther) == pytest.approx(2 * qpi.std_smoothing(optics))


def test_calibrate_prediction_keeps_the_sample_std():
    pred = Prediction(mean=np.zeros((3, 4, 4), np.float32), std=np.ones((3, 4, 4), np.float32))
    out = calibrate_prediction(pred, StdCalibration(2.0, 0.5), [1.0, 2.0, 4.0], single=False)
    np.testing.assert_allclose(out.sample_std, 1.0)
    np.testing.assert_allclose(out.std[:, 0, 0], np.sqrt(4 + np.array([0.25, 1.0, 4.0])), rtol=1e-6)


def test_a_calibrated_model_file_reports_the_calibrated_std(model_files, tmp_path):
    from napari_cvdm.inference.models import load_model, save_calibrated

    model = load_model(model_files["sr"])
    assert model.calibration is None
    x = np.random.default_rng(0).poisson(20, (32, 32)).astype(np.float32)
    raw = model.predict(x, n_samples=2, steps=2, device="cpu")
    assert raw.sample_std is None  # a file without calibration predicts as before
    path = save_calibrated(model, StdCalibration(3.0, 0.0, {"pairs": 1}), tmp_path / "cal.safetensors")
    calibrated = load_model(path)
    assert calibrated.calibration.scale == 3.0 and calibrated.calibration.smoothing == 0.0
    pred = calibrated.predict(x, n_samples=2, steps=2, device="cpu")
    np.testing.assert_array_equal(pred.mean, raw.mean)
    np.testing.assert_allclose(pred.sample_std, raw.std)
    np.testing.assert_allclose(pred.std, 3 * raw.std, rtol=1e-5)
    smooth = load_model(save_calibrated(model, StdCalibration(3.0, 0.0, {}, 1.5), tmp_path / "smooth.safetensors"))
    assert smooth.calibration.smoothing == 1.5  # recorded in the file and applied by predict
    pred = smooth.predict(x, n_samples=2, steps=2, device="cpu")
    np.testing.assert_allclose(pred.std, 3 * smoothed_std(raw.std, 1.5), rtol=1e-5)


def test_calibrate_command_writes_a_calibrated_model(model_files, tmp_path, capsys):
    from napari_cvdm.cli import main
    from napari_cvdm.inference.models import load_model

    out = tmp_path / "sr-cal.safetensors"
    args = ["calibrate", "--model", str(model_files["sr"]), "--output", str(out), "--n-per-class", "1"]
    assert (
        main([*args, "--size", "32", "--samples", "4", "--steps", "3", "--classes", "er", "actin", "--tile-size", "16"])
        == 0
    )
    calibrated = load_model(out)
    cal = calibrated.calibration
    assert cal is not None and cal.fitted_on["pairs"] == 2 and cal.fitted_on["groups"] == ["actin", "er"]
    assert calibrated.default_steps == cal.fitted_on["steps"] == 3 != load_model(model_files["sr"]).default_steps
    assert cal.fitted_on["input_side"] == 32 and cal.fitted_on["tile_size"] == 16  # what the std was fitted on
    assert list(cal.scales) == [2] and cal.for_samples(2).scale == cal.scales[2]  # the first running result
    tried = {float(r): rho for r, rho in cal.fitted_on["smoothing_rho"].items()}  # multiples of the PSF's σ
    assert len(tried) == len(SMOOTHING_FACTORS) and min(tried) == pytest.approx(1.35, abs=0.05)
    assert cal.for_samples(4) is cal and cal.smoothing == pytest.approx(max(tried, key=tried.get), abs=0.01)
    assert set(cal.fitted_on["physics_rho"]) == {"spread", "with_physics"}  # sr has the camera's noise to weigh in
    assert cal.fitted_on["physics"] == "the camera's photon and read noise"
    printed = capsys.readouterr().out
    assert "within ±2σ" in printed and "2 samples ×" in printed and "the camera's photon and read noise:" in printed


def test_running_results_of_few_samples_get_the_scale_fitted_for_them():
    """The mean of 2 samples errs more, and their spread is a worse estimate, than 8 samples': a calibration
    fitted at 8 must not make the first running std look more certain than it is."""
    rng = np.random.default_rng(5)
    sigma = np.exp(rng.uniform(-1, 1, (8, 48, 48)))  # per image: the posterior's scale
    samples = sigma[:, None] * rng.standard_normal((8, 8, 48, 48))  # 8 images × 8 samples, truth 0
    truth_draw = sigma * rng.standard_normal((8, 48, 48))  # the truth is one more draw of the posterior
    cal = fit_calibration(
        [x.std(0, ddof=1) for x in samples], [x.mean(0) - t for x, t in zip(samples, truth_draw)], [1.0] * 8
    )
    cal = StdCalibration(cal.scale, cal.floor, {"samples": 8}, 0.0)
    two = [x[:2].std(0, ddof=1) for x in samples], [x[:2].mean(0) - t for x, t in zip(samples, truth_draw)]
    fitted = dataclasses_replace(cal, scales={2: fit_scale(*two, [1.0] * 8, cal)})
    assert fitted.scales[2] > 1.2 * cal.scale  # √(1 + 1/2)/√(1 + 1/8) and the 2-sample spread's noise
    before = np.mean([coverage(cal.apply(s, 1.0), e, 2) for s, e in zip(*two)])
    after = np.mean([coverage(fitted.for_samples(2).apply(s, 1.0), e, 2) for s, e in zip(*two)])
    assert before < 0.92 and after == pytest.approx(0.9545, abs=0.01)
    assert fitted.for_samples(8) is fitted and fitted.for_samples(3).scale == fitted.scales[2]
    unknown = StdCalibration(cal.scale, cal.floor, {}, 0.0, {2: 5.0, 4: 4.0})  # no record of the fitted count
    assert unknown.for_samples(8) is unknown and unknown.for_samples(1).scale == 5.0
    restored = StdCalibration.from_dict(json.loads(json.dumps(fitted.to_dict())))  # as the model file keeps it
    with pytest.raises(ValueError, match="does not know \\(future_term\\)"):  # not dropped silently
        StdCalibration.from_dict({**fitted.to_dict(), "future_term": 1.0})
    assert restored.scales == fitted.scales and restored.for_samples(2).scale == fitted.scales[2]


# ---------------------------------------------------------------- out of distribution (sr)

OPTICS = WidefieldOptics()


def test_band_noise_level_function_finds_the_photon_gain_under_bright_structures():
    rng = np.random.default_rng(0)
    for photons in (100, 3000):
        x = simulate_sr_pair("microtubules", (128, 128), photons, rng).input
        a, _ = band_noise_level_function(x, OPTICS.cutoff_cycles_per_pixel)
        assert a == pytest.approx(1.0, abs=0.25)  # the simulated camera counts photons
        assert photon_level(x, a) == pytest.approx(photons, rel=0.35)


def test_out_of_band_power_marks_undersampled_images():
    rng = np.random.default_rng(1)
    fine = simulate_sr_pair("er", (128, 128), 300, rng).input
    coarse = simulate_sr_pair("er", (128, 128), 300, rng, WidefieldOptics(pixel_um=4 * OPTICS.pixel_um)).input
    cutoff = OPTICS.cutoff_cycles_per_pixel
    assert out_of_band_ratio(fine, cutoff) < 1.3
    assert out_of_band_ratio(coarse, cutoff) > 2.0


def test_the_out_of_distribution_warning_fires_for_a_4x_wrong_pixel_size_and_not_for_the_bundled_optics():
    task, rng = get_task("sr"), np.random.default_rng(2)
    ranges = task.simulation_ranges()
    for cls in ("microtubules", "actin", "ccps"):
        right = simulate_sr_pair(cls, (96, 96), 200, rng).input
        coarse = simulate_sr_pair(cls, (96, 96), 200, rng, WidefieldOptics(pixel_um=4 * OPTICS.pixel_um)).input
        assert task.distribution_warnings(right, OPTICS, ranges) == []
        (remark,) = task.distribution_warnings(coarse, OPTICS, ranges)
        assert "pixels are probably larger" in remark and "62.6 nm" in remark
    # a known pixel size (from the file or the layer), 4× off either way
    pred = Prediction(mean=np.zeros((4, 4), np.float32), std=np.zeros((4, 4), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for px in (4 * OPTICS.pixel_um, OPTICS.pixel_um / 4):
            (remark,) = check_pixel_size(pred, task, OPTICS, (px, px)).warnings
            assert "took them as 62.6 nm" in remark and f"--pixel-size {px:g}" in remark
    assert check_pixel_size(pred, task, OPTICS, (0.065, 0.065)).warnings == []
    assert check_pixel_size(pred, task, OPTICS, None).warnings == []
    # a binned image whose file says so: one warning (the known size), not the spectrum's guess as well
    guessed = Prediction(mean=pred.mean, std=pred.std, warnings=[remark := task.undersampling_remark(OPTICS), "x"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        said = check_pixel_size(guessed, task, OPTICS, (4 * OPTICS.pixel_um,) * 2).warnings
        assert remark not in said and "x" in said and len(said) == 2
        assert check_pixel_size(guessed, task, OPTICS, None).warnings == [remark, "x"]


def test_brightness_far_outside_the_trained_range_is_named():
    task, rng = get_task("sr"), np.random.default_rng(4)
    ranges = task.simulation_ranges()
    assert task.distribution_warnings(simulate_sr_pair("er", (96, 96), 200, rng).input, OPTICS, ranges) == []
    (remark,) = task.distribution_warnings(simulate_sr_pair("er", (96, 96), 8000, rng).input, OPTICS, ranges)
    assert "photons per pixel" in remark and "10–1000" in remark
    # unknown training conditions (a model fine-tuned on the user's pairs): nothing to compare with
    assert task.distribution_warnings(simulate_sr_pair("er", (96, 96), 8000, rng).input, OPTICS, None) == []


def test_std_layer_says_whether_it_is_calibrated():
    from napari_cvdm.inference.layers import result_layers

    raw = Prediction(mean=np.zeros((8, 8), np.float32), std=np.ones((8, 8), np.float32))
    cal = calibrate_prediction(raw, StdCalibration(2.0), [1.0], single=True)
    for pred, expected in ((raw, False), (cal, True)):
        std_layer = result_layers("cells", get_task("sr"), pred, (1.0, 1.0), (0.0, 0.0))[1]
        assert std_layer[1]["metadata"]["cvdm"]["calibrated"] is expected
    np.testing.assert_allclose(result_layers("cells", get_task("sr"), cal, (1, 1), (0, 0))[1][0], 2.0)


def test_evaluate_reports_1_sigma_coverage_and_a_reliability_diagram(tmp_path):
    import json

    from napari_cvdm.inference.uncertainty import RELIABILITY_LEVELS
    from napari_cvdm.jobs.evaluate import Example, evaluate, format_reliability, format_table, write_rows

    rng = np.random.default_rng(0)
    examples = [Example(f"er_{k}", "er", np.zeros((8, 8)), rng.standard_normal((16, 16))) for k in range(3)]
    rows = evaluate(examples, {"calibrated": lambda x: (np.zeros((16, 16)), np.ones((16, 16)))}, get_task("sr"))
    row = next(r for r in rows if r.group == "all")
    assert row.coverage_1sigma == pytest.approx(0.68, abs=0.07) and row.coverage_2sigma == pytest.approx(0.95, abs=0.04)
    assert len(row.reliability) == len(RELIABILITY_LEVELS) and "within ±1σ" in format_table(rows)
    assert "calibrated" in format_reliability(rows)
    record = json.loads(write_rows(rows, tmp_path / "rows.json").read_text())
    assert record["reliability_levels"] == list(RELIABILITY_LEVELS) and record["rows"][0]["reliability"]


def test_a_spread_that_does_not_track_the_error_is_reported():
    from napari_cvdm.jobs.calibrate import calibration_remarks

    rng = np.random.default_rng(5)
    stds = [np.exp(rng.uniform(-1, 1, (64, 64))) * 1e-3 for _ in range(4)]  # spread unrelated to the error
    errors = [rng.standard_normal((64, 64)) for _ in range(4)]
    cal = fit_calibration(stds, errors, [1.0] * 4)
    assert cal.fitted_on["spread_share"] < 0.25 and "does not track its error" in calibration_remarks(cal)[0]
    good_stds, good_errors = _synthetic(2.0)
    assert calibration_remarks(fit_calibration(good_stds, good_errors, [1.0] * len(good_stds))) == []


def test_the_smoothing_is_chosen_by_how_well_the_std_ranks_the_error():
    """With a slowly varying error scale and a noisy spread (8 samples), pooling farther ranks pixels better;
    with a scale that changes from pixel to pixel and an exact spread, the smallest radius is kept."""
    from scipy.ndimage import gaussian_filter

    from napari_cvdm.jobs.std_fit import fit_smoothing

    rng = np.random.default_rng(3)
    fields = [gaussian_filter(rng.standard_normal((96, 96)), 8) for _ in range(6)]
    smooth_scale = [np.exp(0.5 * f / f.std()) for f in fields]  # the error's scale varies slowly
    samples = [gaussian_filter(rng.standard_normal((8, 96, 96)), (0, 1.5, 1.5)) for _ in smooth_scale]
    noisy = [s * z.std(0, ddof=1) / z.std() for s, z in zip(smooth_scale, samples)]  # 8 samples, correlated
    errors = [s * rng.standard_normal(s.shape) for s in smooth_scale]
    radius, table = fit_smoothing(noisy, errors, 1.0)
    assert radius > 1.0 and table[radius] > table[1.0] + 0.015, table
    sharp = [np.exp(rng.standard_normal((96, 96))) for _ in range(6)]
    radius, table = fit_smoothing(sharp, [s * rng.standard_normal(s.shape) for s in sharp], 1.0)
    assert radius == 1.0, table
    assert fit_smoothing(noisy, errors, 0.0) == (0.0, {})  # a task without smoothing: nothing to choose


def test_calibration_pairs_default_to_the_classes_the_model_was_trained_on(model_files):
    """A model trained on some classes is calibrated on those, not on classes added to the simulator since."""
    from napari_cvdm.inference.models import load_model
    from napari_cvdm.jobs.calibrate import CalibrationRequest, calibration_pairs

    model = load_model(model_files["sr"])
    request = CalibrationRequest(model="x", output=Path("y.safetensors"), n_per_class=1, size=16)
    model.metadata["training"] = {"data": {"simulate": 100, "classes": ["er", "blobs", "retired-class"]}}
    assert model.trained_classes == ["er", "blobs"]
    pairs = calibration_pairs(request, model)
    assert sorted(p.group for p in pairs) == ["blobs", "er"]
    model.metadata["training"] = {"data": {"pairs": "my-folder"}}  # trained on the user's pairs: the task's classes
    assert model.trained_classes is None
    pairs = calibration_pairs(request, model)
    assert sorted(p.group for p in pairs) == sorted(get_task("sr").classes)
    trained = {"simulate": 100, "classes": ["er"], "variant": "aberrated", "variant_share": 0.5}
    model.metadata["training"] = {"data": trained}  # a share drawn as a variant: calibrated on as many of those
    assert model.trained_variant == "aberrated"
    assert [p.tags for p in calibration_pairs(request, model)] == [(), ("aberrated",)]


# ---------------------------------------------------------------- the input's noise beside the spread


def _spread_and_noise(noise_share: float, seed: int):
    """Spread maps and independent noise-variance maps; errors drawn with variance ``spread² + share·noise``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    stds, noise, errors = [], [], []
    for _ in range(6):
        s = np.exp(gaussian_filter(rng.standard_normal((64, 64)), 3) * 3)
        v = np.exp(gaussian_filter(rng.standard_normal((64, 64)), 3) * 6)
        stds.append(s)
        noise.append(v)
        errors.append(np.sqrt(s**2 + noise_share * v) * rng.standard_normal(s.shape))
    return stds, noise, errors


def test_a_physics_variance_joins_the_spread_where_the_error_holds_it():
    from napari_cvdm.inference.uncertainty import effective_std
    from napari_cvdm.jobs.std_fit import fit_physics_weight

    stds, noise, errors = _spread_and_noise(4.0, 0)  # the error holds 4× the noise variance: weight 2
    weight, rho = fit_physics_weight(stds, errors, noise, [1.0] * 6, 0.0)
    assert weight == pytest.approx(2.0, rel=0.2) and rho["with_physics"] > rho["spread"] + 0.05, rho
    cal = fit_calibration(stds, errors, [1.0] * 6, physics_variances=noise, physics_weight=weight)
    test_stds, test_noise, test_errors = _spread_and_noise(4.0, 1)
    covered = [coverage(cal.apply(s, 1.0, v), e, 2) for s, v, e in zip(test_stds, test_noise, test_errors)]
    assert np.mean(covered) == pytest.approx(GAUSSIAN_COVERAGE[2], abs=0.02)
    joined = effective_std(stds[0], 0.0, noise[0], weight) ** 2
    np.testing.assert_allclose(joined, stds[0] ** 2 + weight**2 * noise[0], rtol=1e-5)
    with pytest.raises(ValueError, match="physics variance"):
        cal.apply(stds[0], 1.0)  # the map is needed
    stds, noise, errors = _spread_and_noise(0.0, 2)  # the error holds no noise variance: not added
    assert fit_physics_weight(stds, errors, noise, [1.0] * 6, 0.0)[0] == 0.0


def test_the_smoothing_and_the_physics_weight_are_chosen_together():
    """The joint choice ranks the errors at least as well as choosing the radius for the spread alone and the
    weight after it (that pair is among those tried), reports the weight :func:`fit_physics_weight` picks at its
    radius, and falls back to the spread's own radius when the error holds no physics variance."""
    from napari_cvdm.jobs.std_fit import fit_physics_weight, fit_smoothing, fit_smoothing_and_weight

    stds, noise, errors = _spread_and_noise(4.0, 0)
    units = [1.0] * len(stds)
    radius, weight, table = fit_smoothing_and_weight(stds, errors, noise, units, 1.0)
    assert sorted(table) == [1.0, 1.5, 2.0, 3.0, 4.0] and radius in table
    assert weight == fit_physics_weight(stds, errors, noise, units, radius)[0] > 0
    alone, _ = fit_smoothing(stds, errors, 1.0)
    sequential = fit_physics_weight(stds, errors, noise, units, alone)[1]["with_physics"]
    assert table[radius]["with_physics"] >= sequential and table[alone]["with_physics"] == pytest.approx(sequential)
    stds, noise, errors = _spread_and_noise(0.0, 2)  # no physics in the error: the spread's radius, no weight
    radius, weight, table = fit_smoothing_and_weight(stds, errors, noise, units, 1.0)
    assert weight == 0.0 and radius == fit_smoothing(stds, errors, 1.0)[0]
    with pytest.raises(ValueError, match="radius"):
        fit_smoothing_and_weight(stds, errors, noise, units, 0.0)


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_sr_physics_variance_is_the_cameras_noise_at_the_output_pixels(offset):
    """Photon noise at gain 0.5 counts per photon and read noise of 2 counts, with and without a camera offset
    (raw counts): the map is the noise variance at each pixel's expected intensity, not ``gain × offset`` more."""
    from scipy.ndimage import gaussian_filter

    task = get_task("sr")
    rng = np.random.default_rng(4)
    field = gaussian_filter(rng.standard_normal((128, 128)), 10)
    level = 20 * np.exp(3 * (field - field.min()) / np.ptp(field))  # photons, 20–400, slowly varying
    x = rng.poisson(level) * 0.5 + offset + rng.normal(0, 2, level.shape)
    v = task.physics_variance(x, OPTICS)
    assert v.shape == (256, 256) and v.dtype == np.float32
    truth = np.repeat(np.repeat(0.25 * level + 4.0, 2, 0), 2, 1)  # counts²
    ratio = (v / truth)[8:-8, 8:-8]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1) and np.percentile(ratio, 95) < 1.3


def test_a_calibration_with_a_physics_weight_is_recorded_and_applied_to_every_result(model_files, tmp_path):
    from napari_cvdm.inference.models import load_model, save_calibrated
    from napari_cvdm.inference.predict import SamplingOptions

    model = load_model(model_files["sr"])
    cal = StdCalibration(2.0, 0.0, {"samples": 4}, 1.0, {2: 3.0}, physics_weight=0.5)
    calibrated = load_model(save_calibrated(model, cal, tmp_path / "noise.safetensors"))
    assert calibrated.calibration.physics_weight == 0.5
    assert calibrated.metadata["format_version"] == 2  # a reader of version 1 would drop the weight: it refuses
    x = np.random.default_rng(0).poisson(50, (32, 32)).astype(np.float32)
    parts = []
    pred = calibrated.predict_with(
        x,
        SamplingOptions(4, 2, 0, "cpu", progressive=True),
        lambda p: parts.append(p.partial) if p.partial is not None else None,
    )
    nv = model.task.physics_variance(x, model.optics)
    expected = 2.0 * np.sqrt(smoothed_std(pred.sample_std, 1.0) ** 2 + 0.25 * nv)
    np.testing.assert_allclose(pred.std, expected, rtol=1e-4)
    first = parts[0].prediction  # 2 samples: their own scale, the same noise term
    expected = 3.0 * np.sqrt(smoothed_std(pred.samples[:2].std(0, ddof=1), 1.0) ** 2 + 0.25 * nv)
    np.testing.assert_allclose(first.std, expected, rtol=1e-4)


def test_the_lowest_modes_barely_change_the_planes_and_their_error_map_grows_to_the_borders():
    """Tilt and curvature across the field move the defocused planes far less than a phase error of the same size
    at the scale of the specimen: the planes barely constrain them, so their error is what the qpi physics
    variance describes, largest at the borders and corners."""
    from scipy.ndimage import gaussian_filter

    from napari_cvdm.physics.fresnel import QPIOptics, defocused_pair
    from napari_cvdm.physics.modes import low_mode_variance

    optics, n, margin = QPIOptics(), 64, 48
    rng = np.random.default_rng(2)
    big = n + 2 * margin
    phase = 2.0 * gaussian_filter(rng.standard_normal((big, big)), 3)
    y, x = np.mgrid[:big, :big] / (n / 2) - big / n  # ±1 across the crop, further outside
    low = 0.3 * x + 0.2 * y + 0.25 * (x**2 - y**2) + 0.15 * x * y
    crop = (slice(margin, margin + n), slice(margin, margin + n))
    mid = gaussian_filter(rng.standard_normal((big, big)), 3)
    mid *= np.std(low[crop]) / np.std(mid[crop])  # the same rms across the crop
    planes = defocused_pair(phase, optics)[(slice(None), *crop)]
    moved_low = np.std(defocused_pair(phase + low, optics)[(slice(None), *crop)] - planes)
    moved_mid = np.std(defocused_pair(phase + mid, optics)[(slice(None), *crop)] - planes)
    assert moved_low < 0.05 * moved_mid, (moved_low, moved_mid)  # about 1 %: below any camera noise

    v = low_mode_variance((n, 3 * n))
    assert v.shape == (n, 3 * n) and v.mean() == pytest.approx(1.0, abs=1e-4)
    assert v[0, 0] > 3 * v[n // 2, 3 * n // 2] and v[0, 0] == pytest.approx(v[-1, -1], rel=0.02)
    np.testing.assert_allclose(get_task("qpi").physics_variance(np.ones((2, n, n)), optics), low_mode_variance((n, n)))
    large = low_mode_variance((1000, 700))  # built on a coarse grid and interpolated: the same shape of map
    assert large[0, 0] == pytest.approx(low_mode_variance((128, 128))[0, 0], rel=0.1)
