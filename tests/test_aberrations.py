"""Aberrated widefield transfer (defocus, spherical aberration), the sr simulator's ``aberrated`` variant, and
how training and evaluate draw a variant."""

import numpy as np
import pytest

from napari_cvdm.data.dataset import PairError, SimulatedPairs
from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene
from napari_cvdm.jobs.evaluate import held_out_conditions, held_out_set
from napari_cvdm.physics.aberrations import depth_of_field_um, pupil_otf
from napari_cvdm.physics.widefield import WidefieldOptics, _rotf, airy_psf
from napari_cvdm.tasks import get_task

OPTICS = WidefieldOptics(na=1.35, wavelength_um=0.52)
FINE_PX = OPTICS.pixel_um / 4


def _radial(otf: np.ndarray, k_um: float) -> float:
    """The OTF ``(H, W//2+1)`` on the first row at ``k_um`` µm⁻¹ (linear interpolation)."""
    k = np.fft.rfftfreq(2 * (otf.shape[1] - 1), d=FINE_PX)
    return float(np.interp(k_um, k, otf[0]))


def test_the_unaberrated_pupil_gives_the_airy_transfer():
    grid = (256, 256)
    pupil = pupil_otf(grid, FINE_PX, OPTICS)
    airy = _rotf(airy_psf(OPTICS.na, OPTICS.wavelength_um, FINE_PX, oversample=1), grid)
    for k in (1.0, 2.0, 3.0, 4.0):
        assert _radial(pupil, k) == pytest.approx(_radial(airy, k), abs=0.03)
    assert pupil[0, 0] == pytest.approx(1.0)


def test_defocus_and_spherical_aberration_lower_the_mid_band_and_keep_the_cut_off():
    grid = (256, 256)
    ideal = pupil_otf(grid, FINE_PX, OPTICS)
    blurred = pupil_otf(grid, FINE_PX, OPTICS, 0.6 * depth_of_field_um(OPTICS), -0.05)
    cutoff = 2 * OPTICS.na / OPTICS.wavelength_um
    for k in (1.5, 2.5, 3.5):
        assert _radial(blurred, k) < 0.8 * _radial(ideal, k)
    assert _radial(blurred, 0.9 * cutoff) > 0.01  # still passed
    assert abs(_radial(blurred, 1.05 * cutoff)) < 1e-6  # nothing beyond the cut-off
    with pytest.raises(ValueError, match="cannot hold the pupil"):
        pupil_otf(grid, 0.2, OPTICS)


def test_an_aberrated_scene_blurs_its_input_and_keeps_the_ideal_target():
    sharp = simulate_sr_scene("microtubules", (48, 48), SRConditions(500, 0.0), np.random.default_rng(4), OPTICS)
    aberrated = SRConditions(500, 0.0, defocus_um=0.7 * depth_of_field_um(OPTICS), spherical_waves=0.1)
    blurred = simulate_sr_scene("microtubules", (48, 48), aberrated, np.random.default_rng(4), OPTICS)
    assert np.corrcoef(blurred.target.ravel(), sharp.target.ravel())[0, 1] > 0.9999  # the same ideal target
    # (brighter: the signal level is the input's brightest, and the aberrated input's peaks are lower)
    detail = [np.abs(np.diff(p.input, axis=1)).mean() / np.percentile(p.input, 99.9) for p in (sharp, blurred)]
    assert detail[1] < 0.85 * detail[0]  # less detail through the aberrated pupil


def test_the_variant_share_draws_the_variant_and_leaves_sets_without_one_as_they_were():
    sr = get_task("sr")
    plain = SimulatedPairs(sr, 3, 32, seed=5, classes=["ccps"])
    none = SimulatedPairs(sr, 3, 32, seed=5, classes=["ccps"], variant="aberrated", variant_share=0.0)
    for i in range(3):
        np.testing.assert_array_equal(plain[i][0], none[i][0])
    every = SimulatedPairs(sr, 3, 32, seed=5, classes=["ccps"], variant="aberrated", variant_share=1.0)
    assert all(every.drawn_variant(np.random.default_rng(i)) == "aberrated" for i in range(5))
    with pytest.raises(PairError, match="variants are aberrated"):
        SimulatedPairs(sr, 3, 32, classes=["ccps"], variant="blurry")
    with pytest.raises(PairError, match="from 0 to 1"):
        SimulatedPairs(sr, 3, 32, classes=["ccps"], variant="aberrated", variant_share=2.0)


def test_evaluate_holds_out_one_variant():
    sr, qpi = get_task("sr"), get_task("qpi")
    assert held_out_conditions(sr, "aberrated") == [("aberrated", None, "aberrated")]
    assert {v for _, _, v in held_out_conditions(qpi, "pure")} == {"pure"}
    with pytest.raises(ValueError, match="variants are"):
        held_out_conditions(sr, "pure")
    pairs = held_out_set(sr, 2, 32, classes=["ccps"], variant="aberrated")
    assert [p.tags for p in pairs] == [("aberrated",), ("aberrated",)]


def test_a_training_run_records_its_variant_and_refuses_one_without_simulation(tmp_path):
    from napari_cvdm.training.job import TrainingRequest
    from napari_cvdm.training.training_data import simulated_data

    data = simulated_data(get_task("sr"), 4, 0, 32, classes=["er"], variant=("aberrated", 0.5))
    assert data.record["variant"] == "aberrated" and data.record["variant_share"] == 0.5
    assert "variant" not in simulated_data(get_task("sr"), 4, 0, 32, classes=["er"]).record
    with pytest.raises(ValueError, match="give --simulate N"):
        TrainingRequest("sr", tmp_path / "m.safetensors", pairs=tmp_path, variant="aberrated")
