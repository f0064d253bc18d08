"""The prediction path: shapes, units, stacks, progress, cancellation."""

import numpy as np
import pytest

from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.predict import SamplingOptions


def test_sr_predict_shapes_dtypes_units_and_stacks(trained_models):
    model = load_model(trained_models["sr"])
    img = np.random.default_rng(0).random((20, 30)) * 50 + 10
    pred = model.predict(img, n_samples=3, steps=2, seed=1)
    assert pred.mean.shape == pred.std.shape == (40, 60)
    assert pred.mean.dtype == pred.std.dtype == np.float32
    assert pred.samples.shape == (3, 40, 60) and pred.schedule.shape == (40, 60)
    np.testing.assert_allclose(pred.mean, pred.samples.mean(0), rtol=1e-5, atol=1e-4)
    assert (pred.std >= 0).all()
    scaled = model.predict(img * 10, n_samples=3, steps=2, seed=1)  # output in the input's units
    np.testing.assert_allclose(scaled.mean, 10 * pred.mean, rtol=1e-4, atol=1e-3)
    stack = model.predict(np.stack([img, img[::-1], img * 2]), n_samples=2, steps=2)
    assert stack.mean.shape == (3, 40, 60) and stack.samples.shape == (2, 3, 40, 60)
    u16 = model.predict((img * 100).astype(np.uint16), n_samples=2, steps=2)
    assert np.isfinite(u16.mean).all()


def test_qpi_predict_gives_zero_mean_phase(trained_models):
    model = load_model(trained_models["qpi"])
    pair = 1 + 0.1 * np.random.default_rng(0).standard_normal((2, 32, 32))
    pred = model.predict(pair, n_samples=2, steps=2)
    assert pred.mean.shape == (32, 32) and pred.mean.dtype == np.float32
    assert abs(float(pred.mean.mean())) < 1e-5
    with pytest.raises(ValueError, match="qpi expects two planes"):
        model.predict(pair[0], n_samples=2, steps=2)


def test_progress_covers_all_planes_and_cancel_stops(trained_models):
    from napari_cvdm.diffusion.sampler import SamplingCancelled

    model = load_model(trained_models["sr"])
    seen = []
    model.predict(np.ones((2, 16, 16)) + np.eye(16), n_samples=2, steps=3, callback=seen.append)
    assert [p.done for p in seen] == list(range(1, 7)) and seen[-1].total == 6
    with pytest.raises(SamplingCancelled):
        model.predict(np.eye(16) + 1, n_samples=2, steps=50, callback=lambda p: p.done < 2)


def test_a_tiled_progressive_run_reports_one_total_from_the_first_tile_on(trained_models):
    """The progress bar's length is known before sampling (λ(x) of a tiled image reports per tile)."""
    model = load_model(trained_models["sr"])
    totals = []
    model.predict_with(
        np.random.default_rng(0).random((64, 64)),
        SamplingOptions(4, 2, 0, "cpu", tile_size=32, progressive=True),
        lambda p: totals.append((p.done, p.total)),
    )
    assert totals[0][0] == 0 and {t for _, t in totals} == {totals[-1][0]}


def test_sampling_options_are_checked_when_made():
    for bad in ({"n_samples": 0}, {"steps": 0}, {"tile_size": 8}):
        with pytest.raises(ValueError):
            SamplingOptions(**bad)


def test_a_flat_image_carries_a_warning(trained_models):
    model = load_model(trained_models["sr"])
    with pytest.warns(UserWarning, match="flat"):
        pred = model.predict(np.full((16, 16), 7.0), n_samples=2, steps=1)
    assert any("flat" in w for w in pred.warnings)
    assert not any("flat" in w for w in model.predict(np.eye(16) + 1, n_samples=2, steps=1).warnings)


def test_cancel_on_a_tiled_image_stops_within_one_tile(model_files):
    """Tiles of λ(x) and of the denoiser ask the callback too: a large image never runs a whole pass after Cancel."""
    from napari_cvdm.diffusion.sampler import SamplingCancelled

    model = load_model(model_files["sr"])
    calls = {"lam": 0, "denoiser": 0}
    lam, den = model.network.schedule.lam, model.network.denoiser.forward
    model.network.schedule.lam = lambda x: calls.__setitem__("lam", calls["lam"] + 1) or lam(x)
    model.network.denoiser.forward = lambda *a, **k: (
        calls.__setitem__("denoiser", calls["denoiser"] + 1) or den(*a, **k)
    )
    image = np.random.default_rng(0).random((48, 80)).astype(np.float32)
    with pytest.raises(SamplingCancelled):  # cancelled during λ(x): one tile of it, no denoiser pass
        model.predict(image, n_samples=2, steps=5, tile_size=16, callback=lambda p: False)
    assert calls == {"lam": 1, "denoiser": 0}
    calls.update(lam=0, denoiser=0)
    with pytest.raises(SamplingCancelled):  # cancelled after the first denoiser tile of the first step
        model.predict(image, n_samples=2, steps=5, tile_size=16, callback=lambda p: calls["denoiser"] < 1)
    tiles = calls["lam"]
    assert tiles > 4 and calls["denoiser"] == 1  # the whole image has `tiles` tiles


def test_progressive_runs_hand_out_calibrated_running_results_and_keep_stops_a_stack(trained_models, tmp_path):
    from napari_cvdm.diffusion.sampler import Stop
    from napari_cvdm.inference.models import save_calibrated
    from napari_cvdm.inference.uncertainty import StdCalibration

    model = load_model(
        save_calibrated(
            load_model(trained_models["sr"]),
            StdCalibration(3.0, 0.0, {"samples": 8}, 0.0, {2: 6.0, 4: 4.0}),  # running results: their own scale
            tmp_path / "c.safetensors",
        )
    )
    image = np.ones((16, 16)) + np.eye(16)
    whole = model.predict_with(image, SamplingOptions(8, 3, 5, "cpu"))
    parts, totals = [], []
    done = model.predict_with(
        image,
        SamplingOptions(8, 3, 5, "cpu", progressive=True),
        lambda p: (totals.append((p.done, p.total)), parts.append(p.partial) if p.partial is not None else None)[1],
    )
    np.testing.assert_allclose(done.mean, whole.mean, atol=1e-5)
    assert {t for _, t in totals} == {totals[-1][0]} == {3 * 3}  # 3 rounds × 3 steps
    assert [p.done for p in parts] == [2, 4, 8] and {p.n_samples for p in parts} == {8}
    last = parts[-1].prediction  # the last running result is the result, calibrated like it
    np.testing.assert_allclose(last.mean, whole.mean, atol=1e-5)
    np.testing.assert_allclose(last.std, whole.std, atol=1e-5)
    np.testing.assert_allclose(parts[0].prediction.std, 6.0 * whole.samples[:2].std(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(parts[1].prediction.std, 4.0 * whole.samples[:4].std(0, ddof=1), rtol=1e-4)

    stack = np.stack([image, 2 * image, 3 * image])
    with pytest.warns(UserWarning, match="after 2 of 4 samples of plane 2 of 3"):
        kept = model.predict_with(
            stack,
            SamplingOptions(4, 2, 0, "cpu", progressive=True),
            lambda p: Stop.KEEP if p.partial is not None and p.partial.plane == 1 else None,
        )
    assert kept.mean.shape == kept.std.shape == (2, 32, 32)  # planes 1 and 2 (2 of its 4 samples); not plane 3
    assert kept.samples.shape == (2, 2, 32, 32) and kept.residual.shape == (2, 16, 16)
