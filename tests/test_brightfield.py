"""Brightfield planes as a camera writes them: through-focus stacks, raw counts with an image of the empty field or
an estimated illumination, saturation, and the quick check that keeps TIE fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
import torch

from napari_cvdm.cli import main
from napari_cvdm.data.simulate_qpi import crop_of_larger_field, phase_map
from napari_cvdm.inference.classical import load_method
from napari_cvdm.physics.brightfield import ESTIMATE, estimated_illumination, outer_pair, prepare_brightfield, saturated
from napari_cvdm.physics.fresnel import QPIOptics, defocus_stack, phase_object

OPTICS = QPIOptics(wavelength_um=0.55, pixel_um=0.3, dz_um=2.0)


def _raw_stack(side: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A raw uint16 3-plane stack at (−dz, 0, +dz) under a vignetted illumination, the empty field and the phase."""
    rng = np.random.default_rng(seed)
    big, c = crop_of_larger_field((side, side), OPTICS)
    phase = phase_map("cells", big, rng, OPTICS)
    field = phase_object(torch.from_numpy(phase))
    planes = defocus_stack(field, (-2.0, 0.0, 2.0), 0.55, 0.3).numpy()[:, c : c + side, c : c + side]
    y, x = np.mgrid[0:side, 0:side] / side
    illumination = 20000 * (1 - 0.3 * ((x - 0.4) ** 2 + (y - 0.6) ** 2))
    raw = rng.poisson(planes * illumination).astype(np.uint16)
    return raw, illumination.astype(np.float32), phase[c : c + side, c : c + side]


def test_a_through_focus_stack_gives_its_outer_pair_and_says_so():
    raw, empty, _ = _raw_stack()
    prepared = prepare_brightfield(raw, empty)
    np.testing.assert_allclose(prepared.planes, outer_pair(raw) / empty, rtol=1e-5)
    assert any("3 planes" in n and "outer pair" in n for n in prepared.notes)
    assert any("empty field" in n for n in prepared.notes)
    with pytest.raises(ValueError, match="N >= 2"):
        outer_pair(raw[0])


def test_raw_counts_are_refused_at_once_with_what_to_give():
    raw, _, _ = _raw_stack()
    with pytest.raises(ValueError, match="raw camera counts.*--flat-field FILE.*--flat-field estimate"):
        prepare_brightfield(raw)
    with pytest.raises(ValueError, match="one plane"):
        prepare_brightfield(raw, np.ones((10, 10)))
    with pytest.raises(ValueError, match="<= 0"):
        prepare_brightfield(raw, np.zeros(raw.shape[-2:]))


def test_the_estimated_illumination_follows_a_smooth_vignetting():
    raw, empty, _ = _raw_stack(side=96)
    surface = estimated_illumination(raw.astype(np.float64))
    assert np.abs(surface / empty - 1).max() < 0.03  # the cell barely moves a quadratic fit of the planes' mean
    prepared = prepare_brightfield(raw, ESTIMATE)
    assert abs(float(np.median(prepared.planes)) - 1) < 0.03 and any("estimated" in n for n in prepared.notes)


def test_saturated_pixels_are_found_at_the_type_ceiling_or_a_plateau():
    planes = np.full((2, 32, 32), 1000, np.uint16)
    planes[0, :4, :4] = 65535
    assert saturated(planes).sum() == 16
    twelve_bit = np.random.default_rng(0).integers(100, 3000, (2, 64, 64)).astype(np.uint16)
    twelve_bit[1, 10:14, 10:14] = 4095
    assert saturated(twelve_bit).sum() == 16
    assert not saturated(np.random.default_rng(1).normal(1, 0.01, (2, 64, 64))).any()
    notes = prepare_brightfield(planes, np.full((32, 32), 1000.0)).notes
    assert any("16 pixels" in n and "saturated" in n for n in notes)


def test_tie_runs_with_its_quick_check_in_well_under_a_second():
    raw, empty, truth = _raw_stack(side=128)
    tie = load_method("tie", {"dz_um": 2.0, "pixel_um": 0.3, "wavelength_um": 0.55}, flat_field=None)
    planes = prepare_brightfield(raw, empty).planes
    tie.predict(planes)  # warm-up (FFT plans)
    t0 = time.perf_counter()
    result = tie.predict(planes)
    assert time.perf_counter() - t0 < 1.0
    assert 0.5 < result.residual_rms < 2.25 and result.reference_rms is None
    assert not any("explains the planes only" in w for w in result.warnings)
    wrong = tie.inner.task.quick_consistency(planes, 3 * result.mean, tie.optics)
    assert wrong.rms > 2.25 and any("explains the planes only" in w for w in wrong.warnings)


def test_predict_runs_on_a_raw_three_plane_stack_with_its_empty_field(tmp_path, capsys):
    raw, empty, _ = _raw_stack()
    tifffile.imwrite(tmp_path / "stack.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "empty.tif", empty)
    optics = ["--dz", "2", "--pixel-size", "0.3", "--wavelength", "0.55"]
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "stack.tif"), "--model", "tie", *optics, "--output-dir", str(out)]) == 1
    assert "--flat-field" in capsys.readouterr().err
    args = ["predict", str(tmp_path / "stack.tif"), "--model", "tie", *optics, "--output-dir", str(out)]
    assert main([*args, "--flat-field", str(tmp_path / "empty.tif")]) == 0
    assert tifffile.imread(out / "stack_mean.tif").shape == raw.shape[-2:]
    assert "outer pair" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "stack.tif"), "--model", "bicubic", "--flat-field", "estimate"]) == 2
    assert "--flat-field is for brightfield planes" in capsys.readouterr().err


def test_the_inner_planes_of_a_stack_check_the_phase_made_from_its_outer_pair():
    import re

    from napari_cvdm.inference.brightfield_input import stack_check

    raw, empty, truth = _raw_stack(side=96)
    stack = prepare_brightfield(raw, empty).stack
    assert stack.shape == raw.shape and abs(float(np.median(stack)) - 1) < 0.05

    def per_plane(phase):
        return [float(v) for v in re.findall(r"([\d.]+)×", stack_check(stack, phase, OPTICS))]

    right, wrong = per_plane(truth - truth.mean()), per_plane(3 * (truth - truth.mean()))
    assert len(right) == 3 and max(right) < 1.2 and min(wrong) > 2 * max(right)
    tie = load_method("tie", {"dz_um": 2.0, "pixel_um": 0.3, "wavelength_um": 0.55}, flat_field=ESTIMATE)
    notes = tie.predict(raw).warnings
    assert any("across the stack's 3 planes" in n for n in notes)


def test_a_stack_is_divided_once_by_one_empty_field_per_plane():
    """An empty field recorded at each plane of the stack divides each plane (the outer pair was divided a second
    time on its own, which refused a per-plane empty field of the stack's length)."""
    raw, empty, _ = _raw_stack()
    per_plane = np.stack([empty * f for f in (1.0, 1.1, 0.9)])
    prepared = prepare_brightfield(raw, per_plane)
    np.testing.assert_allclose(prepared.stack, raw / per_plane, rtol=1e-5)
    np.testing.assert_allclose(prepared.planes, prepared.stack[[0, -1]])


def test_absorption_with_fine_detail_is_told_from_phase_and_said():
    """Two planes cannot tell fine absorption from phase: the planes' mean betrays it, and the result says so."""
    from napari_cvdm.data.simulate_qpi import camera_planes
    from napari_cvdm.physics.absorption import FINE_ABSORPTION_RATIO, fine_absorption_ratio
    from napari_cvdm.tasks import get_task

    optics, side, rng = QPIOptics(), 96, np.random.default_rng(3)
    big, c = crop_of_larger_field((side, side), optics)
    phase = phase_map("cells", big, rng, optics)
    grains = rng.random(big) < 0.08  # stained granules, a pixel or two wide
    amplitude = 1 - 0.5 * np.clip(np.asarray(grains, float) + np.roll(grains, 1, axis=0), 0, 1)
    ratios = {}
    for name, amp in (("pure", np.ones(big)), ("fine absorption", amplitude)):
        planes = camera_planes(phase, amp, c, (side, side), optics) + rng.normal(0, 0.01, (2, side, side))
        ratios[name] = fine_absorption_ratio(planes, 0.01)
        remarks = get_task("qpi").distribution_warnings(planes.astype(np.float32), optics, None)
        assert any("absorbs with fine detail" in r for r in remarks) == (name != "pure"), (name, remarks)
    assert ratios["pure"] < FINE_ABSORPTION_RATIO < ratios["fine absorption"], ratios


def test_a_retrieval_given_a_stack_fits_every_plane():
    """The iterative and flat-background methods fit all planes of a through-focus stack, not only its outer pair:
    the plane in focus constrains the amplitude."""
    from napari_cvdm.tasks.qpi_condition import fitted_phase

    optics, side, rng = QPIOptics(), 48, np.random.default_rng(5)
    big, c = crop_of_larger_field((side, side), optics)
    phase = phase_map("cells", big, rng, optics)
    amplitude = 1 - 0.3 * np.asarray(rng.random(big) < 0.05, float)
    field = phase_object(torch.from_numpy(phase), torch.from_numpy(amplitude))
    stack = defocus_stack(field, (-1.0, 0.0, 1.0), optics.wavelength_um, optics.pixel_um).numpy()
    stack = (stack[:, c : c + side, c : c + side] + rng.normal(0, 0.005, (3, side, side))).astype(np.float32)
    result = load_method("iterative").predict_with(stack)
    np.testing.assert_allclose(result.mean, fitted_phase(stack, optics), atol=1e-5)
    assert any("fitted to all of them" in w for w in result.warnings)
    assert not any("outer pair" in w for w in result.warnings)
    assert load_method("tie").predict_with(stack).mean.shape == (side, side)  # the TIE takes the outer pair


def test_saturated_pixels_are_left_out_of_the_retrieval():
    """A camera clipped at its ceiling: the pixels at the ceiling say nothing of the phase; fitted anyway, they pull
    it off."""
    from napari_cvdm.data.metrics import qpi_scores
    from napari_cvdm.tasks.qpi_condition import fitted_phase

    optics, side, rng = QPIOptics(), 64, np.random.default_rng(2)
    big, c = crop_of_larger_field((side, side), optics)
    phase = phase_map("cells", big, rng, optics)
    pair = defocus_stack(phase_object(torch.from_numpy(phase)), (-1.0, 1.0), 0.521, 0.21).numpy()
    pair = pair[:, c : c + side, c : c + side] + rng.normal(0, 0.005, (2, side, side))
    ceiling = float(np.percentile(pair, 96)) * 20000
    raw = np.minimum(np.round(pair * 20000), ceiling).astype(np.uint16)  # a plateau at the image's maximum
    empty = np.full((side, side), 20000.0, np.float32)
    from napari_cvdm.inference.brightfield_input import BrightfieldInput

    masked = BrightfieldInput(load_method("iterative").inner, empty).predict_with(raw)  # raw counts, the empty field
    assert any("left out of the retrieval's fit" in w for w in masked.warnings)
    truth = phase[c : c + side, c : c + side]
    unmasked = fitted_phase(raw / 20000.0, optics)
    assert qpi_scores(masked.mean, truth).psnr > qpi_scores(unmasked, truth).psnr + 0.5


def test_the_simulator_draws_fine_absorption_for_training_and_a_held_out_group_the_check_flags(monkeypatch):
    """A quarter of the training pairs absorb with fine detail of their own (amplitude 0.4–1); the held-out
    "fine absorption" variant is such a pair, the check flags it, and the nine earlier held-out conditions are
    drawn as before (the new one is listed last)."""
    from napari_cvdm.data.simulate_qpi import simulate_fine_absorbing_pair
    from napari_cvdm.physics.absorption import FINE_ABSORPTION_RATIO, fine_absorption_ratio
    from napari_cvdm.tasks import get_task
    from napari_cvdm.tasks.qpi import FINE_ABSORPTION_SHARE, QPI_VARIANTS

    task = get_task("qpi")
    tags = [variant for _, _, variant in task.held_out_conditions()]
    assert tags[:9] == [v for _ in range(3) for v in QPI_VARIANTS[:3]] and tags[9:] == ["fine absorption"] * 3
    pair = simulate_fine_absorbing_pair("cells", (96, 96), np.random.default_rng(2), noise=0.01)
    assert 0.4 <= pair.amplitude.min() < 0.9 and pair.amplitude.max() <= 1.0
    assert fine_absorption_ratio(pair.input, 0.01) > FINE_ABSORPTION_RATIO
    inp, tgt = task.simulate("cells", 96, np.random.default_rng(2), None, None, 0.01, "fine absorption")
    np.testing.assert_array_equal(inp, pair.input)
    import napari_cvdm.tasks.qpi as qpi_module

    drawn = []
    monkeypatch.setattr(qpi_module, "simulate_fine_absorbing_pair", lambda *a: drawn.append(a) or pair)
    rng = np.random.default_rng(0)
    for _ in range(80):
        task.simulate("textures", 32, rng)
    assert 0.5 * FINE_ABSORPTION_SHARE * 80 <= len(drawn) <= 1.5 * FINE_ABSORPTION_SHARE * 80, len(drawn)


def test_a_pair_whose_difference_shows_no_fine_texture_is_said_in_words_not_as_infinity():
    from napari_cvdm.tasks.qpi_checks import fine_absorption_remark

    said = fine_absorption_remark(float("inf"))
    assert "inf" not in said and "their difference none above the noise" in said
    assert "2.5× the fine texture" in fine_absorption_remark(2.5)
