"""Nonlinear phase retrieval and the consistency check (issue: qpi that beats physics, and says when it cannot)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.data.simulate import camera_planes, crop_of_larger_field, simulate_qpi_pair
from napari_cvdm.inference.classical import classical_method
from napari_cvdm.physics.background import flatten_background
from napari_cvdm.physics.fresnel import QPIOptics, defocus_stack, phase_object
from napari_cvdm.physics.noise import noise_level_function, noise_sigma
from napari_cvdm.physics.retrieval import RetrievalOptions, fit_margins, retrieve_phase
from napari_cvdm.physics.seams import FRINGE_LIMIT, SEAM_CORRELATION_LIMIT, border_fringe_ratio, seam_correlation
from napari_cvdm.physics.tie import tie_phase, tie_phase_torch
from napari_cvdm.physics.widefield import WidefieldOptics, widefield_from_target
from napari_cvdm.tasks import get_task, qpi_condition
from napari_cvdm.tasks.qpi import flat_background_phase, iterative_phase, pair_noise, physics_noise

LAM, PX, DZ = 0.521, 0.21, 1.0


def _bumps_in_a_larger_field(n: int = 64, big: int = 128) -> tuple[torch.Tensor, np.ndarray]:
    """Noise-free planes ``(1, 2, n, n)`` of three Gaussian bumps (one with |∇²φ| above k/dz: a caustic within
    1 µm) seen as the centre crop of a ``big`` field, and the phase on the crop."""
    yy, xx = np.mgrid[0:big, 0:big] * PX
    c = big * PX / 2
    phi = np.zeros((big, big))
    for dy, dx, s, a in [(-3, -2, 0.5, 2.0), (2, 3, 0.7, 3.0), (3, -3, 1.5, 2.5)]:
        phi += a * np.exp(-((yy - c - dy) ** 2 + (xx - c - dx) ** 2) / (2 * s * s))
    o = (big - n) // 2
    planes = defocus_stack(phase_object(torch.from_numpy(phi)), (-DZ, DZ), LAM, PX)[None, :, o : o + n, o : o + n]
    return planes.float(), phi[o : o + n, o : o + n]


def test_the_test_phase_has_a_caustic():
    _, phi = _bumps_in_a_larger_field()
    lap = sum(np.gradient(np.gradient(phi, PX, axis=k), PX, axis=k) for k in (0, 1))
    assert np.abs(lap).max() > 2 * np.pi / LAM / DZ  # |∇²φ| > k/dz: rays cross before 1 µm


def test_retrieval_recovers_a_phase_with_caustics_where_tie_cannot():
    planes, truth = _bumps_in_a_larger_field()
    best_tie = max(
        qpi_scores(tie_phase_torch(planes[:, 0], planes[:, 1], DZ, LAM, PX, a)[0].numpy(), truth).psnr
        for a in (0.0, 1e-3, 0.01, 0.1, 1.0)
    )
    pure = RetrievalOptions(iterations=300, start_weight=0.0, fit_amplitude=False)
    fitted = retrieve_phase(planes, (-DZ, DZ), LAM, PX, 0.01, pure)
    assert best_tie < 30
    assert qpi_scores(fitted.phase[0].numpy(), truth).psnr >= 40
    assert fitted.residual.abs().max() < 0.1  # in units of σ = 0.01: the planes are explained


def test_the_misfit_stalls_when_its_rms_falls_by_less_than_the_stall_drop():
    from napari_cvdm.physics.retrieval import STALL_DROP, misfit_stalled

    assert misfit_stalled(1.0, (1 - STALL_DROP / 2) ** 2) and not misfit_stalled(1.0, (1 - 2 * STALL_DROP) ** 2)
    assert misfit_stalled(1.0, 1.0) and misfit_stalled(0.0, 0.0)


def test_the_retrieval_stops_where_the_fit_stalls_and_a_fixed_count_is_one_lbfgs_run():
    """On noisy planes the fit stops before its 400 iterations, once it explains the data as well as the
    former fixed 100 iterations did (the rest would fit noise and let the lowest modes drift); ``stall_window=None``
    is one L-BFGS run of at most that many iterations, which ends early once its line search finds no lower value —
    and the count returned is the one L-BFGS ran, not the one asked for."""
    pair = simulate_qpi_pair("cells", (64, 64), np.random.default_rng(5), noise=0.01)
    planes = torch.from_numpy(np.asarray(pair.input, np.float32))[None]
    stopped = retrieve_phase(planes, (-DZ, DZ), LAM, PX, 0.01)
    assert 20 <= stopped.iterations < 400
    fixed = retrieve_phase(planes, (-DZ, DZ), LAM, PX, 0.01, RetrievalOptions(iterations=100, stall_window=None))
    short = retrieve_phase(planes, (-DZ, DZ), LAM, PX, 0.01, RetrievalOptions(iterations=5, stall_window=None))
    assert short.iterations == 5 and 5 < fixed.iterations < 100  # this pair: L-BFGS ends after about 20
    rms = [float(r.residual.pow(2).mean().sqrt()) for r in (stopped, fixed)]
    assert rms[0] <= 1.02 * rms[1] and rms[0] < 1.0, rms  # in noise units (σ = 0.01): down to the noise
    with pytest.raises(ValueError, match="stall window"):
        RetrievalOptions(stall_window=5)


def test_a_recipe_recorded_before_the_stall_rule_runs_its_fixed_count(monkeypatch):
    """A model conditioned on a 100-iteration retrieval keeps getting one: its recipe has no stall window."""
    import napari_cvdm.tasks.qpi_condition as qpi_module
    import napari_cvdm.tasks.qpi_recipes as recipes

    seen = []
    real = recipes.retrieve_phase
    monkeypatch.setattr(
        recipes, "retrieve_phase", lambda *a, **k: seen.append(a[5]) or real(*a[:5], RetrievalOptions(iterations=2))
    )
    recipe = qpi_module.retrieval_recipe(QPIOptics())
    assert recipe["stall_window"] == 20 and recipe["iterations"] == 400 and recipe["stall_start"] == 30
    old = {k: v for k, v in recipe.items() if k not in ("stall_window", "stall_start")} | {"iterations": 100}
    judged_at_once = {k: v for k, v in recipe.items() if k != "stall_start"}
    planes = torch.ones((1, 2, 32, 32))
    for r in (old, recipe, judged_at_once):
        recipes.retrieval_channels(planes, r)
    assert (seen[0].iterations, seen[0].stall_window) == (100, None)
    assert (seen[1].iterations, seen[1].stall_window, seen[1].stall_start) == (400, 20, 30)
    assert seen[2].stall_start == 0  # a recipe recorded before the stall start judged a stall from the first check


def test_a_recipe_with_a_longer_fit_gives_it_to_nearly_transparent_pairs_only(monkeypatch):
    """Fitting longer refines the lowest modes where there is no absorption to trade against the phase and pushes
    absorption into the phase where there is: a recipe that records a longer fit gives it, pair by pair, only to
    pairs the recorded fit found nearly transparent and explained, and whose mean shows no fine texture, weighing
    the data by the better of two noise estimates; recipes without one are fitted as before, the batch together."""
    import napari_cvdm.tasks.qpi_condition as qpi_module
    import napari_cvdm.tasks.qpi_recipes as recipes
    from napari_cvdm.data.simulate_qpi import simulate_fine_absorbing_pair

    recorded = {k: v for k, v in qpi_module.retrieval_recipe(QPIOptics()).items() if k != "stall_start"}
    recorded |= {"noise": 0.01, "iterations": 100, "stall_window": None}
    recipe = recipes.with_transparent_fit(recorded)
    assert recipes.longer_recipe(recipe) == recorded | recipes.TRANSPARENT_FIT
    assert recipes.recorded_recipe(recipe) == recorded
    rng = np.random.default_rng(5)
    clear = simulate_qpi_pair("cells", (64, 64), rng, noise=0.01, absorbing=False).input
    dark = simulate_qpi_pair("cells", (64, 64), rng, noise=0.01, absorbing=True, absorption_range=(0.4, 0.6)).input
    fine = simulate_fine_absorbing_pair("cells", (64, 64), np.random.default_rng(2), noise=0.01).input
    seen = []
    real = recipes.retrieve_phase
    monkeypatch.setattr(
        recipes,
        "retrieve_phase",
        lambda *a, **k: seen.append((a[0].shape[0], a[4], a[5])) or real(*a[:5], RetrievalOptions(iterations=30)),
    )
    batch = torch.from_numpy(np.stack([clear, dark, fine]).astype(np.float32))
    out = recipes.retrieval_channels(batch, recipe)
    assert out.shape == (3, 2, 64, 64)
    fits = [(n, noise, o.iterations, o.stall_window, o.stall_start) for n, noise, o in seen]
    assert fits[0] == (1, 0.01, 100, None, 0) and fits[1][:1] + fits[1][2:] == (1, 400, 20, 30)  # the clear pair
    assert fits[2:] == [(1, 0.01, 100, None, 0)] * 2
    assert recipes.FIT_NOISE_FLOOR <= fits[1][1] <= recipes.fit_noise(clear)  # the better of the two estimates
    ones = np.ones((64, 64))
    assert recipes.fits_longer(clear, 0.01, ones, 0.65)
    assert not recipes.fits_longer(clear, 0.01, out[1, 1].numpy(), 0.65)  # the dark pair's amplitude
    assert not recipes.fits_longer(fine, 0.01, ones, 0.65)  # fine texture in the mean, whatever the amplitude
    assert not recipes.fits_longer(clear, 0.01, ones, 2.5)  # planes the Fresnel model does not explain
    # fine phase structure inflates the planes' own noise estimate; the residual then says the noise is lower
    assert recipes.longer_fit_noise(0.02, 0.0065) == pytest.approx(0.01)
    assert recipes.longer_fit_noise(0.005, 0.0065) == 0.005 and recipes.longer_fit_noise(1e-5, 1e-5) == 1e-3
    assert not recipes.fits_longer(clear[:, :12, :12], 0.01, ones[:12, :12], 0.65)  # too small to judge
    seen.clear()
    recipes.retrieval_channels(batch, recorded)
    assert [n for n, *_ in seen] == [3]  # without a longer fit the batch is fitted together, as before


def test_no_stall_is_judged_before_the_stall_start():
    """At first the fit may smooth a rough start's amplitude while its misfit stays flat: no stall before
    ``stall_start`` iterations, whatever the misfit does."""
    pair = simulate_qpi_pair("cells", (64, 64), np.random.default_rng(5), noise=0.01)
    planes = torch.from_numpy(np.asarray(pair.input, np.float32))[None]
    late = retrieve_phase(planes, (-DZ, DZ), LAM, PX, 0.01, RetrievalOptions(stall_start=150))
    assert late.iterations >= 150
    with pytest.raises(ValueError, match="stall start"):
        RetrievalOptions(stall_start=-1)


def test_retrieval_takes_any_number_of_planes_and_checks_them():
    planes, truth = _bumps_in_a_larger_field(48, 96)
    with pytest.raises(ValueError, match="one per dz"):
        retrieve_phase(planes, (-DZ, 0.0, DZ), LAM, PX, 0.01)
    yy, xx = np.mgrid[0:96, 0:96] * PX
    three = defocus_stack(phase_object(torch.from_numpy(np.zeros((96, 96)))), (-DZ, 0.0, DZ), LAM, PX)
    r = retrieve_phase(three[None, :, 24:72, 24:72].float(), (-DZ, 0.0, DZ), LAM, PX, 0.01)
    assert r.phase.shape == (1, 48, 48) and r.residual.shape == (1, 3, 48, 48)
    assert r.phase.abs().max() < 1e-3  # a flat field stays flat


def test_noise_estimates_match_the_simulated_noise():
    rng = np.random.default_rng(0)
    for sigma in (0.003, 0.03):
        pair = simulate_qpi_pair("cells", (96, 96), rng, noise=sigma)
        assert np.mean([noise_sigma(p) for p in pair.input]) == pytest.approx(sigma, rel=0.25)
    flat = rng.poisson(np.full((96, 96), 50.0)).astype(float) + rng.normal(0, 2, (96, 96))
    a, b = noise_level_function(flat)
    assert a * 50 + b == pytest.approx(54, rel=0.25)  # Poisson variance 50 plus read noise 2²


def test_qpi_residual_is_about_one_noise_unit_for_the_truth_and_far_above_for_a_wrong_phase():
    qpi, optics = get_task("qpi"), QPIOptics()
    pair = simulate_qpi_pair("cells", (96, 96), np.random.default_rng(3), noise=0.01, absorbing=True)
    true = qpi.consistency(pair.input, pair.target, optics)
    assert true.residual.shape == (2, 96, 96)
    assert 0.6 < true.rms < 1.5 and true.noise == pytest.approx(0.01, rel=0.25)
    assert not any("does not explain" in w for w in true.warnings)
    wrong = qpi.consistency(pair.input, np.zeros_like(pair.target), optics)
    assert wrong.rms > 2.5 * true.rms and any("does not explain" in w for w in wrong.warnings)


def test_sr_residual_is_about_one_noise_unit_for_the_truth_and_far_above_for_a_wrong_image():
    from napari_cvdm.data.simulate import simulate_sr_pair

    sr, optics = get_task("sr"), WidefieldOptics()
    pair = simulate_sr_pair("microtubules", (64, 64), 60.0, np.random.default_rng(1), optics)
    implied = widefield_from_target(pair.target, optics)
    assert implied.shape == (64, 64)
    true = sr.consistency(pair.input, pair.target, optics)
    assert 0.7 < true.rms < 1.3 and not true.warnings
    shifted = sr.consistency(pair.input, np.roll(pair.target, 6, axis=1), optics)
    assert shifted.rms > 2 * true.rms and shifted.warnings


def _one_cell() -> tuple[np.ndarray, np.ndarray]:
    """A pure-phase cell inside a flat background, as the camera's crop of a larger field (noise σ 0.01)."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:160, 0:160] * PX
    r2 = ((yy - 16.8) ** 2 + (xx - 16.8) ** 2) / 4.0**2
    phi = 2.5 * np.sqrt(np.clip(1 - r2, 0, None))
    planes = defocus_stack(phase_object(torch.from_numpy(phi)), (-DZ, DZ), LAM, PX).numpy()[:, 32:128, 32:128]
    return planes + rng.normal(0, 0.01, planes.shape), phi[32:128, 32:128]


def test_swapped_planes_carry_a_plane_order_warning_and_a_clean_input_does_not():
    qpi, optics = get_task("qpi"), QPIOptics()
    planes, truth = _one_cell()
    clean = qpi.consistency(planes, iterative_phase(planes, optics), optics)
    assert not clean.warnings
    swapped = planes[::-1].copy()
    result = qpi.consistency(swapped, iterative_phase(swapped, optics), optics)
    assert any("swapped" in w for w in result.warnings)


def test_a_phase_beyond_the_trained_range_carries_a_warning():
    qpi, optics = get_task("qpi"), QPIOptics()
    planes, truth = _one_cell()
    wild = truth * 4  # 10 rad for a model trained on 0–3.5 rad
    assert any("beyond" in w for w in qpi.consistency(planes, wild, optics).warnings)


def test_fit_margins_keeps_the_given_phase_inside_the_image():
    planes, truth = _bumps_in_a_larger_field(48, 96)
    given = torch.from_numpy(truth).float()[None]
    r = fit_margins(planes, given, (-DZ, DZ), LAM, PX, 0.01)
    np.testing.assert_allclose(r.phase[0].numpy(), truth - truth.mean(), atol=1e-5)


def test_training_conditions_are_computed_once_and_can_be_kept_on_disk(tmp_path, monkeypatch):
    qpi = get_task("qpi")
    norm = qpi.default_normalization()
    pair = simulate_qpi_pair("cells", (32, 32), np.random.default_rng(0), noise=0.01)
    first = qpi.normalized_patch(pair.input, pair.target, norm, 0, 0, 32)[0]
    assert first.shape == (4, 32, 32)  # two planes, the retrieval's phase and amplitude
    np.testing.assert_allclose(first[2] * norm.phase_scale, iterative_phase(pair.input, QPIOptics()), atol=1e-5)
    monkeypatch.setenv("NAPARI_CVDM_CONDITION_CACHE", str(tmp_path))
    copy = pair.input.copy()  # a new array: not in the in-memory cache
    again = qpi.normalized_patch(copy, pair.target, norm, 0, 0, 32)[0]
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(again, first)
    import napari_cvdm.tasks.qpi_condition as module

    monkeypatch.setattr(module, "_physics_condition", lambda *a: pytest.fail("recomputed instead of read from disk"))
    np.testing.assert_array_equal(qpi.normalized_patch(pair.input.copy(), pair.target, norm, 0, 0, 32)[0], first)


def test_planes_from_a_wrap_around_simulation_carry_a_warning_and_camera_crops_do_not():
    """An FFT simulation without padding makes periodic planes (the last column continues the first); no camera
    records that. Checked on the task's own held-out crops (no false alarm) and on periodic textures."""
    from napari_cvdm.data.simulate import phase_map
    from napari_cvdm.physics.seams import edge_seam_ratio

    qpi, optics, rng = get_task("qpi"), QPIOptics(), np.random.default_rng(3)
    for _ in range(2):
        phi = phase_map("textures", (128, 128), rng, optics)
        periodic = defocus_stack(
            phase_object(torch.from_numpy(phi)), (-1.0, 1.0), optics.wavelength_um, optics.pixel_um
        )
        planes = periodic.numpy() + rng.normal(0, 0.02, (2, 128, 128))
        assert any("wrap-around" in w for w in qpi.distribution_warnings(planes, optics, None))
    for src in ("textures", "cells"):
        for noise in (0.005, 0.02):
            crop = simulate_qpi_pair(src, (128, 128), rng, noise=noise).input
            assert not any("wrap-around" in w for w in qpi.distribution_warnings(crop, optics, None))
    assert np.isnan(edge_seam_ratio(rng.normal(1.0, 0.01, (64, 64))))  # flat edges: no evidence either way


def _cells_pair(seed: int, side: int = 96):
    return simulate_qpi_pair("cells", (side, side), np.random.default_rng(seed), noise=0.005, absorbing=False)


def test_the_flat_background_takes_a_smooth_error_off_a_cells_phase():
    pair = _cells_pair(4)
    yy, xx = np.mgrid[-1:1:96j, -1:1:96j]
    wrong = pair.target + 0.6 * xx + 0.4 * (xx**2 + yy**2)  # the kind of error the lowest modes carry
    fit = flatten_background(wrong, pair.input, 0.005, 0.21)
    assert fit.applied, fit.reason
    assert fit.mask.mean() > 0.2 and np.mean(fit.mask & (pair.target > 0.05)) < 0.002  # background, no cell
    before, after = qpi_scores(wrong, pair.target).psnr, qpi_scores(fit.phase, pair.target).psnr
    assert after > before + 5, (before, after)
    assert abs(np.median(fit.phase[fit.mask])) < 0.05  # the background at zero


def test_flat_background_retrieval_beats_the_retrieval_on_cells_and_leaves_other_images_alone():
    pair = _cells_pair(4)
    retrieval, flat = iterative_phase(pair.input, QPIOptics()), flat_background_phase(pair.input, QPIOptics())
    assert qpi_scores(flat, pair.target).psnr > qpi_scores(retrieval, pair.target).psnr + 3
    texture = simulate_qpi_pair("textures", (96, 96), np.random.default_rng(0), noise=0.005, absorbing=False)
    fit = flatten_background(texture.target, texture.input, 0.005, 0.21)
    assert not fit.applied and "no flat background" in fit.reason
    np.testing.assert_array_equal(fit.phase, texture.target)
    sparse = _cells_pair(1)  # some background, but most pixels far from it: an average would be extrapolated
    fit = flatten_background(sparse.target, sparse.input, 0.005, 0.21)
    assert not fit.applied and "far from" in fit.reason
    method = classical_method("flat-background")
    assert method.label == "flat-background"
    with pytest.warns(UserWarning, match="flat-background retrieval: no flat background"):
        said = method.predict_with(texture.input).warnings
    assert any(w.startswith("flat-background retrieval: no flat background") for w in said)  # the user is told


def test_a_smooth_slope_is_not_taken_for_a_level_background():
    optics = QPIOptics()
    (h, w), c = crop_of_larger_field((96, 96), optics)
    phase = 6.0 * np.mgrid[0:h, 0:w][1] / w  # no curvature: quiet in I₊ − I₋, but not a level background
    planes = camera_planes(phase, np.ones_like(phase), c, (96, 96), optics)
    planes = planes + np.random.default_rng(0).normal(0, 0.005, planes.shape)
    fit = flatten_background(phase[c : c + 96, c : c + 96], planes, 0.005, optics.pixel_um)
    assert fit.mask.mean() > 0.5  # it is quiet ...
    assert not fit.applied and "not a level background" in fit.reason  # ... but no correction is made


def test_the_evaluation_baselines_retrieve_each_pair_once(monkeypatch):
    """The iterative and flat-background baselines share one retrieval per pair (it is most of their time)."""
    import napari_cvdm.tasks.qpi as qpi_module

    calls = []
    real = qpi_module.iterative_phase
    import napari_cvdm.tasks.qpi_condition as condition_module

    for module in (qpi_module, condition_module):  # the baselines, and flat_background_phase where it lives
        monkeypatch.setattr(module, "iterative_phase", lambda x, o, opts=None: calls.append(1) or real(x, o, opts))
    methods = get_task("qpi").baselines(QPIOptics())
    pair = _cells_pair(4)
    flat = methods["flat-background retrieval"](pair.input)[0]
    retrieval = methods["iterative retrieval"](pair.input)[0]
    assert len(calls) == 1
    np.testing.assert_array_equal(retrieval, real(pair.input, QPIOptics()))
    np.testing.assert_array_equal(flat, flat_background_phase(pair.input, QPIOptics()))  # (a second retrieval)
    methods["iterative retrieval"](pair.input.copy())  # another pair (a new array): retrieved again
    assert len(calls) == 3


def test_a_non_periodic_object_propagated_with_wrap_around_borders_carries_a_warning():
    """The issue's case: a camera-like crop's phase (not periodic) propagated by FFT without padding. Its phase
    step at the seam puts defocus fringes along two opposite borders, which no camera crop shows."""
    qpi, optics, rng = get_task("qpi"), QPIOptics(), np.random.default_rng(5)
    for src in ("textures", "cells"):
        pair = simulate_qpi_pair(src, (128, 128), rng, optics, noise=0.01)
        wrapped = defocus_stack(
            phase_object(torch.from_numpy(pair.target)), (-1.0, 1.0), optics.wavelength_um, optics.pixel_um
        ).numpy()
        wrapped = wrapped + rng.normal(0, 0.01, wrapped.shape)
        assert border_fringe_ratio(pair.input) < FRINGE_LIMIT and seam_correlation(pair.input) < SEAM_CORRELATION_LIMIT
        assert any("wrap-around" in w for w in qpi.distribution_warnings(wrapped, optics, None))


def test_fine_phase_structure_is_not_taken_for_noise():
    """Rough phase (correlation 2 px, 1 rad) fills the planes with fine caustics that the planes' own noise
    estimate takes for noise (σ 7× too high); what the physics leaves unexplained does not, so clean planes get
    no noise warning."""
    qpi, optics, rng = get_task("qpi"), QPIOptics(), np.random.default_rng(0)
    field = gaussian_filter(rng.standard_normal((192, 192)), 2.0)
    phi = field / field.std()
    planes = defocus_stack(phase_object(torch.from_numpy(phi)), (-1.0, 1.0), optics.wavelength_um, optics.pixel_um)
    x = planes.numpy()[:, 32:160, 32:160] + rng.normal(0, 0.01, (2, 128, 128))
    assert pair_noise(x) > 0.05
    assert 0.007 < physics_noise(x, optics) < 0.015
    assert not any("noisier" in w for w in qpi.distribution_warnings(x, optics, {"noise_range": [0.003, 0.03]}))


def test_the_plane_order_is_judged_only_where_the_planes_show_a_background():
    """Textures fill the field: no surround, no sign to judge — neither order is flagged; cells in a medium are."""
    qpi, optics = get_task("qpi"), QPIOptics()
    for seed in range(5):  # the histogram's mode taken for the background flagged 4 of these 5 one way or the other
        rng = np.random.default_rng(seed)
        x = simulate_qpi_pair("textures", (128, 128), rng, optics, noise=0.01, absorbing=bool(seed % 2)).input
        for planes in (x, x[::-1].copy()):
            tie = tie_phase(planes[0], planes[1], optics.dz_um, optics.wavelength_um, optics.pixel_um)
            assert not any("swapped" in w for w in qpi.consistency(planes, tie, optics).warnings)


def test_a_flat_background_recipe_conditions_on_the_flattened_retrieval_and_shares_the_cached_retrievals(
    tmp_path, monkeypatch
):
    from napari_cvdm.data.normalize import Normalization
    from napari_cvdm.tasks.qpi import flat_background_recipe, qpi_condition

    qpi, optics = get_task("qpi"), QPIOptics()
    plain = qpi.default_normalization(optics)
    flat = Normalization(task="qpi", retrieval=flat_background_recipe(optics))
    pair = _cells_pair(4, 96)
    expected = flat_background_phase(pair.input, optics)
    assert np.abs(expected - iterative_phase(pair.input, optics)).max() > 0.1  # the background step did something
    cond = qpi_condition(torch.from_numpy(pair.input)[None].float(), flat)[0].numpy()
    np.testing.assert_allclose(cond[2] * flat.phase_scale, expected - expected.mean(), atol=1e-4)
    monkeypatch.setenv("NAPARI_CVDM_CONDITION_CACHE", str(tmp_path))
    first = qpi.normalized_patch(pair.input.copy(), pair.target, plain, 0, 0, 96)[0]
    again = qpi.normalized_patch(pair.input.copy(), pair.target, flat, 0, 0, 96)[0]
    assert len(list(tmp_path.glob("*.npy"))) == 1  # one retrieval on disk serves both recipes
    np.testing.assert_array_equal(again[[0, 1, 3]], first[[0, 1, 3]])
    np.testing.assert_allclose(again[2], cond[2], atol=1e-5)


def test_the_retrieval_weighs_each_pair_by_its_own_noise(monkeypatch):
    """At three times the noise the fixed σ of 0.01 gave, the fit chased the noise into large wrong phases; weighed by
    the pair's own noise it stays above the TIE on average."""
    optics = QPIOptics()
    pairs = [
        simulate_qpi_pair("cells", (96, 96), np.random.default_rng(seed), optics, noise=0.03, absorbing=True)
        for seed in range(4)
    ]
    assert all(0.02 < qpi_condition.fit_noise(p.input) < 0.04 for p in pairs)
    assert qpi_condition.retrieval_recipe(optics)["noise"] == qpi_condition.PLANES_NOISE

    def psnr(method) -> float:
        return float(np.mean([qpi_scores(method(p.input), p.target).psnr for p in pairs]))

    weighed = psnr(lambda x: iterative_phase(x, optics))
    tie = psnr(lambda x: tie_phase(x[0], x[1], optics.dz_um, optics.wavelength_um, optics.pixel_um))
    monkeypatch.setattr(qpi_condition, "fit_noise", lambda planes: qpi_condition.RETRIEVAL_NOISE)
    fixed = psnr(lambda x: iterative_phase(x, optics))
    assert weighed > fixed + 2 and weighed > tie


def test_when_the_methods_disagree_the_check_says_which_explains_the_planes():
    from napari_cvdm.tasks.qpi_checks import best_explanation, disagreement

    rng = np.random.default_rng(0)
    phase = gaussian_filter(rng.normal(size=(64, 64)), 4)
    assert disagreement(phase, 1.2 * phase) == ""
    assert "spans" in disagreement(3 * phase, phase) and "correlation" in disagreement(phase, rng.normal(size=(64, 64)))
    note = best_explanation({"A": 2.0, "B": 1.1}, "spans 3 rad against 1 rad")
    assert "B explains the planes best" in note and note.index("B 1.10×") < note.index("A 2.00×")
    optics, qpi = QPIOptics(), get_task("qpi")
    pair = simulate_qpi_pair("cells", (64, 64), np.random.default_rng(2), optics, noise=0.01, absorbing=False)
    wrong = qpi.consistency(pair.input, 4 * pair.target, optics)
    # the physics estimate beside it is named for what it is: not the iterative method (weighed by the pair's noise)
    best = "the reference retrieval (data weighed by a fixed σ of 0.01) explains the planes best"
    assert any("disagree" in w and best in w for w in wrong.warnings)
    tie = tie_phase(pair.input[0], pair.input[1], optics.dz_um, optics.wavelength_um, optics.pixel_um)
    assert not any("disagree" in w for w in qpi.consistency(pair.input, tie, optics).warnings)


def test_a_retrieval_thrown_off_falls_back_to_the_tie_and_says_why():
    from napari_cvdm.physics.retrieval import Retrieved
    from napari_cvdm.tasks.base import MethodNote

    optics = QPIOptics()
    pair = simulate_qpi_pair("cells", (64, 64), np.random.default_rng(4), optics, noise=0.01, absorbing=True)
    wild = 6 * gaussian_filter(np.random.default_rng(5).normal(size=(64, 64)), 3) / 0.05  # large, wrong phases
    thrown = Retrieved(torch.from_numpy(wild).float()[None], torch.ones(1, 64, 64), torch.full((1, 2, 64, 64), 5.0))
    with pytest.warns(MethodNote, match="explains the planes worse than the TIE's"):
        phase = qpi_condition.tie_if_better(pair.input, optics, thrown)
    tie = tie_phase(pair.input[0], pair.input[1], optics.dz_um, optics.wavelength_um, optics.pixel_um)
    np.testing.assert_allclose(phase, tie, atol=1e-4)
    fine = Retrieved(thrown.phase, thrown.amplitude, torch.full((1, 2, 64, 64), 0.7))  # fits to the noise: kept
    np.testing.assert_array_equal(qpi_condition.tie_if_better(pair.input, optics, fine), wild.astype(np.float32))


def test_without_a_flat_background_a_dip_below_a_level_border_still_gets_the_plane_order_warning():
    from napari_cvdm.tasks.qpi_checks import plane_order_warnings

    rng = np.random.default_rng(0)
    planes = 1 + 0.05 * rng.normal(size=(2, 64, 64))  # nothing quiet: no flat background to judge by
    yy, xx = np.mgrid[0:64, 0:64]
    cell = 2.0 * np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / (2 * 10.0**2))
    assert any("below the level at the image's border" in w for w in plane_order_warnings(-cell, planes, 0.001))
    assert plane_order_warnings(cell, planes, 0.001) == []
    texture = gaussian_filter(rng.normal(size=(64, 64)), 3)  # no level border: nothing to judge by
    assert plane_order_warnings(texture - 3 * np.clip(texture, 0, None), planes, 0.001) == []
