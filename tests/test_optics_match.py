"""A model runs at the user's optics by physics similarity: the input is enlarged until its physics is the model's
(sr: the OTF cut-off in cycles per pixel; qpi: the Fresnel number), and the result comes back on the user's grid."""

import numpy as np
import pytest

from conftest import untrained_model_file
from napari_cvdm.data.resample import resample_last_two
from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.optics_match import ModelAtOptics, at_optics
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.physics.fresnel import QPIOptics, defocused_pair
from napari_cvdm.physics.widefield import WidefieldOptics
from napari_cvdm.tasks import get_task


def test_the_sr_scale_makes_the_cutoff_in_cycles_per_pixel_the_models():
    model, user = WidefieldOptics(), WidefieldOptics(na=1.4, wavelength_um=0.6, pixel_um=0.1)
    scale = get_task("sr").similarity_scale(model, user)
    assert user.cutoff_cycles_per_pixel / scale == pytest.approx(model.cutoff_cycles_per_pixel)
    assert user.psf_sigma_px * scale == pytest.approx(model.psf_sigma_px)  # the same PSF width in pixels


def test_the_qpi_scale_makes_the_fresnel_number_the_models():
    model, user = QPIOptics(), QPIOptics(pixel_um=0.3, wavelength_um=0.6, dz_um=3.0)
    scale = get_task("qpi").similarity_scale(model, user)
    fresnel = lambda o, p: p**2 / (o.wavelength_um * o.dz_um)  # noqa: E731
    assert fresnel(user, user.pixel_um / scale) == pytest.approx(fresnel(model, model.pixel_um))


def test_a_pair_at_other_optics_enlarged_by_the_scale_is_the_pair_the_models_optics_record():
    """The physics behind the qpi scale: a smooth phase imaged with pixels twice the model's, the planes enlarged 2×,
    equals the same phase enlarged 2× and imaged with the model's optics."""
    yy, xx = np.mgrid[:128, :128] - 64.0
    phase = 1.5 * np.exp(-(xx**2 + yy**2) / (2 * 9.0**2))
    user = QPIOptics(pixel_um=0.42)  # twice the model's pixel at the same dz and wavelength: scale 2
    scale = get_task("qpi").similarity_scale(QPIOptics(), user)
    assert scale == pytest.approx(2.0)
    big = resample_last_two(phase[None], (256, 256))[0]
    at_model = defocused_pair(big, QPIOptics())
    enlarged = resample_last_two(defocused_pair(phase, user), (256, 256))
    inner = (slice(None), slice(48, -48), slice(48, -48))
    assert np.abs(enlarged[inner] - at_model[inner]).max() < 0.01


def test_shrinking_keeps_the_detail_below_the_new_nyquist_and_drops_what_lies_above():
    """The optics' cut-off lands below the model's Nyquist: its finest detail must reach the model undimmed (an
    anti-aliasing Gaussian for a 3× shrink dims 0.094 cycles per pixel by 16 %), and noise above must not alias."""
    x = np.arange(192) + 0.5
    detail, above = np.cos(2 * np.pi * 0.0937 * x + 0.4), 0.5 * np.cos(2 * np.pi * 0.41 * x)
    shrunk = resample_last_two(np.tile(detail + above, (8, 1)), (8, 64))
    expected = np.cos(2 * np.pi * 0.0937 * 3 * (np.arange(64) + 0.5) + 0.4)
    assert np.abs(shrunk - expected)[:, 8:-8].max() < 0.03
    back = resample_last_two(shrunk, (8, 192))
    assert np.abs(back - detail)[:, 24:-24].max() < 0.03


def test_resampling_a_std_keeps_it_non_negative_and_its_level():
    std = np.full((3, 40, 40), 2.0, np.float32)
    out = resample_last_two(std, (64, 64), variance=True)
    assert out.shape == (3, 64, 64) and np.allclose(out, 2.0, atol=1e-5)


def test_the_models_own_optics_give_the_model_itself(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    assert at_optics(model, {}) is model and at_optics(model, model.optics) is model
    with pytest.raises(ValueError, match="does not apply to sr"):
        at_optics(model, {"dz_um": 2.0})


def test_a_model_at_other_optics_returns_the_users_grid_and_checks_against_the_users_optics(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    run = at_optics(model, {"pixel_um": 0.1})
    assert isinstance(run, ModelAtOptics) and run.scale == pytest.approx(0.1 / 0.0626)
    image = np.random.default_rng(0).poisson(50, (2, 40, 40)).astype(np.float32)
    pred = run.predict(image, n_samples=2, steps=1)
    assert pred.mean.shape == pred.std.shape == (2, 80, 80) and pred.samples.shape == (2, 2, 80, 80)
    assert pred.residual.shape == (2, 40, 40) and (pred.std >= 0).all()


def test_optics_outside_what_the_model_covers_are_said_once(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    run = at_optics(model, {"pixel_um": 0.13, "na": 1.49, "wavelength_um": 0.45})  # undersampled by the camera
    image = np.random.default_rng(0).poisson(50, (32, 32)).astype(np.float32)
    with pytest.warns(UserWarning):
        pred = run.predict(image, n_samples=1, steps=1)
    assert sum("it covers" in w for w in pred.warnings) == 1


def test_given_the_pixel_alone_the_cutoff_is_read_off_the_image_and_said(tmp_path):
    from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene
    from napari_cvdm.inference.classical import load_method
    from napari_cvdm.inference.optics_match import ModelAtImageOptics

    path = untrained_model_file(tmp_path, "sr")
    run = load_method(str(path), {"pixel_um": 0.09})
    assert isinstance(run, ModelAtImageOptics)
    truth = WidefieldOptics(na=1.0, wavelength_um=0.6, pixel_um=0.09)
    image = simulate_sr_scene("er", (96, 96), SRConditions(300.0, 0.1), np.random.default_rng(0), truth).input
    at = run.for_image(image)
    assert at.optics.cutoff_cycles_per_pixel == pytest.approx(truth.cutoff_cycles_per_pixel, rel=0.15)
    assert at.optics.wavelength_um == load_model(path).optics.wavelength_um  # the NA moved, not the emission
    with pytest.warns(UserWarning):
        pred = run.predict(image, n_samples=1, steps=1)
    assert pred.mean.shape == (192, 192) and any("read off the image" in w for w in pred.warnings)


def test_stated_optics_the_image_contradicts_are_warned_about():
    from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene

    truth = WidefieldOptics(na=0.8, wavelength_um=0.6, pixel_um=0.0626)
    image = simulate_sr_scene("er", (128, 128), SRConditions(300.0, 0.1), np.random.default_rng(0), truth).input
    sr = get_task("sr")
    assert sr.optics_disagreement(image, truth) is None
    assert "check them" in sr.optics_disagreement(image, truth.replace(na=1.4))


def test_running_results_of_a_progressive_run_arrive_on_the_users_grid(tmp_path):
    from napari_cvdm.inference.predict import PartialResult, SamplingOptions

    run = at_optics(load_model(untrained_model_file(tmp_path, "sr")), {"pixel_um": 0.05})
    shapes = []

    def seen(progress):
        if isinstance(progress.partial, PartialResult):
            shapes.append(progress.partial.prediction.mean.shape)

    image = np.random.default_rng(0).poisson(50, (40, 40)).astype(np.float32)
    pred = run.predict_with(image, SamplingOptions(4, 1, progressive=True), seen)
    assert shapes and set(shapes) == {(80, 80)} and pred.mean.shape == (80, 80)


def test_evaluate_at_other_optics_simulates_there_and_maps_the_model_onto_them(tmp_path, capsys):
    from napari_cvdm.cli import main

    model = untrained_model_file(tmp_path, "sr")
    args = ["evaluate", "--model", str(model), "--classes", "er", "--n-per-class", "1", "--size", "64"]
    assert main([*args, "--samples", "2", "--steps", "1", "--pixel-size", "0.09", "--na", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "by physics similarity" in out and "CVDM sr" in out


def test_models_models_at_other_optics_and_classical_methods_are_one_kind_of_reconstructor(tmp_path):
    from napari_cvdm.inference.classical import classical_method
    from napari_cvdm.inference.reconstructor import Reconstructor

    model = load_model(untrained_model_file(tmp_path, "sr"))
    for method in (model, at_optics(model, {"pixel_um": 0.1}), classical_method("richardson-lucy")):
        assert isinstance(method, Reconstructor), method


def test_training_across_optics_draws_the_range_and_resamples_to_the_models_grid():
    from napari_cvdm.tasks.sr import OPTICS_RANGE
    from napari_cvdm.training.training_data import SimulatedAcrossOptics, simulated_across_optics

    sr = get_task("sr")
    rng = np.random.default_rng(0)
    drawn = [sr.draw_optics(rng, WidefieldOptics()) for _ in range(200)]
    assert all(o.cutoff_cycles_per_pixel <= 0.5 for o in drawn)  # the camera samples the PSF
    pixels = [o.pixel_um for o in drawn]
    assert OPTICS_RANGE["pixel_um"][0] <= min(pixels) < 0.05 and 0.11 < max(pixels) <= OPTICS_RANGE["pixel_um"][1]
    data = simulated_across_optics(sr, 4, seed=2, size=32, classes=["er"])
    inp, tgt = data.train[1]
    assert abs(inp.shape[-1] - 32) <= 1 and tgt.shape == (2 * inp.shape[0], 2 * inp.shape[1])
    again = SimulatedAcrossOptics(task=sr, n=4, size=32, seed=2, classes=["er"])[1]
    np.testing.assert_array_equal(again[0], inp)  # pair i comes from seed (seed, i)
    with pytest.raises(ValueError, match="not trained across optics"):
        get_task("qpi").draw_optics(rng, QPIOptics())


def test_an_image_whose_file_states_far_other_pixels_runs_at_them_and_says_so(tmp_path):
    from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene
    from napari_cvdm.inference.classical import load_method
    from napari_cvdm.inference.optics_match import ModelAtImageOptics

    path = untrained_model_file(tmp_path, "sr")
    run = load_method(str(path))  # no optics given
    truth = WidefieldOptics(na=1.0, wavelength_um=0.6, pixel_um=0.1)
    image = simulate_sr_scene("er", (96, 96), SRConditions(300.0, 0.1), np.random.default_rng(0), truth).input
    far = run.given(image, (0.1, 0.1))
    assert isinstance(run.for_image(far), ModelAtImageOptics) and run.for_image(far).optics.pixel_um == 0.1
    with pytest.warns(UserWarning):
        pred = run.predict_with(far, SamplingOptions(n_samples=1, steps=1))
    said = "pixels of 100.0 nm (the model's: pixels of 62.6 nm); the model ran at them"
    assert pred.mean.shape == (192, 192) and any(said in w for w in pred.warnings)
    assert not any("took them as" in w for w in pred.warnings)  # no second warning about the same pixels
    # close to the model's pixels, or unknown: the model itself, nothing said about pixels
    for pixel in ((0.07, 0.07), None):
        near = run.given(image, pixel)
        assert run.for_image(near) is run.model
        pred = run.predict_with(near, SamplingOptions(n_samples=1, steps=1))
        said = " ".join(pred.warnings)
        assert "the model ran at" not in said and "took them as" not in said and pred.mean.shape == (192, 192)


def test_a_stated_pixel_size_the_file_contradicts_is_named_as_the_one_given(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    run = at_optics(model, {"pixel_um": 0.13, "na": 1.49, "wavelength_um": 0.45})
    image = np.random.default_rng(0).poisson(50, (48, 48)).astype(np.float32)
    with pytest.warns(UserWarning):
        pred = run.predict_with(run.given(image, (0.0626, 0.0626)), SamplingOptions(n_samples=1, steps=1))
    (remark,) = [w for w in pred.warnings if "62.6 nm" in w]
    assert "took them as 130.0 nm" in remark and "the pixel size given" in remark and "--pixel-size 0.0626" in remark
