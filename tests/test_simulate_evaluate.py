"""Simulators, the simulate command's files, metrics and the evaluate command."""

import json

import numpy as np
import pytest
import torch

from napari_cvdm.cli import main
from napari_cvdm.data.dataset import ArrayPairs, PairError
from napari_cvdm.data.metrics import affine_fit, calibration, qpi_scores, sr_scores
from napari_cvdm.data.simulate import (
    SR_HELDOUT_STRUCTURES,
    SR_STRUCTURES,
    absorption_map,
    camera_planes,
    crop_of_larger_field,
    phase_map,
    simulate_qpi_pair,
    simulate_sr_pair,
)
from napari_cvdm.data.tiff import read_tiff
from napari_cvdm.jobs.evaluate import evaluate, held_out_set, read_pair_folder
from napari_cvdm.physics.fresnel import QPIOptics, angular_spectrum_propagate, defocus_stack, phase_object
from napari_cvdm.physics.retrieval import fresnel_margin
from napari_cvdm.physics.widefield import WidefieldOptics
from napari_cvdm.tasks import get_task


def test_sr_keeps_at_least_four_test_only_classes_apart_from_training():
    assert len(SR_HELDOUT_STRUCTURES) >= 4 and not set(SR_HELDOUT_STRUCTURES) & set(SR_STRUCTURES)
    assert get_task("sr").test_only_classes == tuple(SR_HELDOUT_STRUCTURES)


@pytest.mark.parametrize("structure", list(SR_STRUCTURES) + list(SR_HELDOUT_STRUCTURES))
def test_sr_pairs_have_the_documented_shapes_and_photon_level(structure):
    pair = simulate_sr_pair(structure, (32, 48), 200.0, np.random.default_rng(0))
    assert pair.input.shape == (32, 48) and pair.target.shape == (64, 96)
    assert pair.input.dtype == np.float32 and pair.target.dtype == np.float32
    assert np.isfinite(pair.input).all() and (pair.target >= 0).all() and pair.target.max() > 0
    background = 0.1 * 200.0
    assert np.percentile(pair.input, 99.9) == pytest.approx(200.0 + background, rel=0.35)


def test_sr_input_is_the_target_structure_blurred():
    rng = np.random.default_rng(3)
    pair = simulate_sr_pair("microtubules", (64, 64), 600.0, rng)
    from napari_cvdm.physics.widefield import bicubic_upsample

    corr = np.corrcoef(bicubic_upsample(pair.input).ravel(), pair.target.ravel())[0, 1]
    assert corr > 0.7


def test_phase_maps_are_in_range():
    rng = np.random.default_rng(0)
    for source in ("cells", "textures"):
        phi = phase_map(source, (64, 64), rng)
        assert phi.min() >= 0 and phi.max() <= 3.5 + 1e-9 and phi.max() > 1.0
    images = [np.random.default_rng(1).random((80, 90))]
    phi = phase_map("images", (64, 64), rng, images=images)
    assert phi.shape == (64, 64) and phi.min() >= 0 and phi.max() <= 3.5 + 1e-9
    with pytest.raises(ValueError, match="--images"):
        phase_map("images", (64, 64), rng)


def test_an_independent_forward_model_reproduces_the_qpi_inputs_away_from_the_borders():
    """Angular-spectrum propagation of the target and amplitude matches the inputs up to the noise, except
    within the Fresnel reach of the borders, where light from outside the camera's crop arrives."""
    optics = QPIOptics()
    pair = simulate_qpi_pair("cells", (96, 96), np.random.default_rng(0), optics, noise=0.02, absorbing=True)
    assert pair.amplitude.min() < 0.99 and pair.amplitude.min() >= 0.8
    field = phase_object(
        torch.from_numpy(np.pad(pair.target.astype(np.float64), 48, mode="symmetric")),
        torch.from_numpy(np.pad(pair.amplitude.astype(np.float64), 48, mode="symmetric")),
    )
    m = fresnel_margin((optics.dz_um,), optics.wavelength_um, optics.pixel_um)
    for plane, dz in zip(pair.input, (-optics.dz_um, optics.dz_um)):
        ref = (angular_spectrum_propagate(field, dz, optics.wavelength_um, optics.pixel_um).abs() ** 2).numpy()
        resid = (plane - ref[48:-48, 48:-48])[m:-m, m:-m]
        assert resid.std() == pytest.approx(0.02, rel=0.15)
        assert abs(resid.mean()) < 3 * 0.02 / (96 - 2 * m)


def test_the_camera_crop_has_the_larger_fields_borders_not_mirror_or_wraparound():
    """Border pixels equal those of the larger field propagated on an even larger domain; a mirror-padded or a
    periodic propagation of the crop alone differs there by far more than the noise."""
    optics = QPIOptics()
    rng = np.random.default_rng(1)
    (bh, bw), c = crop_of_larger_field((64, 64), optics)
    phase = phase_map("textures", (bh, bw), rng, optics)
    amplitude = absorption_map(phase, rng, optics.pixel_um)
    crop = camera_planes(phase, amplitude, c, (64, 64), optics)
    pad = 64
    wide = phase_object(
        torch.from_numpy(np.pad(phase, pad, mode="edge")), torch.from_numpy(np.pad(amplitude, pad, mode="edge"))
    )
    dz = (-optics.dz_um, optics.dz_um)
    ref = defocus_stack(wide, dz, optics.wavelength_um, optics.pixel_um).numpy()
    ref = ref[:, pad + c : pad + c + 64, pad + c : pad + c + 64]
    border = np.ones((64, 64), bool)
    border[4:-4, 4:-4] = False
    np.testing.assert_allclose(crop[:, border], ref[:, border], atol=1e-3)  # a third of the smallest noise σ
    inner = (slice(c, c + 64), slice(c, c + 64))
    for mode in ("symmetric", "wrap"):
        alone = phase_object(
            torch.from_numpy(np.pad(phase[inner], 32, mode=mode)),
            torch.from_numpy(np.pad(amplitude[inner], 32, mode=mode)),
        )
        planes = defocus_stack(alone, dz, optics.wavelength_um, optics.pixel_um).numpy()[:, 32:-32, 32:-32]
        assert np.abs(planes - crop)[:, border].max() > 0.1  # 5× the noise of the bundled optics


def test_simulate_writes_the_paired_layout(tmp_path):
    assert main(["simulate", "--task", "sr", "--n", "3", "--size", "32", "--output-dir", str(tmp_path / "sr")]) == 0
    names = sorted(p.name for p in (tmp_path / "sr" / "inputs").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "sr" / "targets").iterdir()) and len(names) == 3
    inp = read_tiff(tmp_path / "sr" / "inputs" / names[0])
    tgt = read_tiff(tmp_path / "sr" / "targets" / names[0])
    assert inp.data.shape == (32, 32) and tgt.data.shape == (64, 64) and inp.data.dtype == np.float32
    assert inp.pixel_size_um == pytest.approx((0.0626, 0.0626))
    assert tgt.pixel_size_um == pytest.approx((0.0313, 0.0313))
    meta = json.loads((tmp_path / "sr" / "simulation.json").read_text())
    assert meta["optics"]["na"] == 1.3

    assert (
        main(
            [
                "simulate",
                "--task",
                "qpi",
                "--n",
                "2",
                "--size",
                "32",
                "--dz",
                "1.5",
                "--output-dir",
                str(tmp_path / "qpi"),
            ]
        )
        == 0
    )
    name = sorted(p.name for p in (tmp_path / "qpi" / "inputs").iterdir())[0]
    inp = read_tiff(tmp_path / "qpi" / "inputs" / name)
    tgt = read_tiff(tmp_path / "qpi" / "targets" / name)
    assert inp.data.shape == (2, 32, 32) and tgt.data.shape == (32, 32)
    assert inp.pixel_size_um == pytest.approx((0.21, 0.21))
    assert json.loads((tmp_path / "qpi" / "simulation.json").read_text())["optics"]["dz_um"] == 1.5
    assert len(read_pair_folder(tmp_path / "qpi")) == 2


def test_metrics():
    rng = np.random.default_rng(0)
    target = rng.random((32, 32))
    assert sr_scores(3 * target + 7, target).psnr > 100  # gain and offset do not count for sr
    assert qpi_scores(target + 2.0, target).psnr > 100  # a constant phase does not count for qpi
    np.testing.assert_allclose(affine_fit(2 * target - 1, target), target, atol=1e-12)
    err = rng.normal(0, 1, 20000) * np.linspace(0.1, 2, 20000)
    good = calibration(np.linspace(0.1, 2, 20000), err)
    assert good.spearman > 0.4 and good.coverage_2sigma == pytest.approx(0.954, abs=0.01)
    assert abs(calibration(np.ones(20000) + rng.random(20000) * 1e-3, err).spearman) < 0.05


def test_evaluate_ranks_the_baselines_sensibly():
    sr, qpi = get_task("sr"), get_task("qpi")
    rows = evaluate(held_out_set(sr, 3, 48, classes=["microtubules", "ccps"]), sr.baselines(WidefieldOptics()), sr)
    table = {(r.group, r.method.split()[0]): r for r in rows}
    assert {g for g, _ in table} == {"microtubules", "ccps", "all"}
    assert table[("all", "richardson-lucy")].psnr > table[("all", "bicubic")].psnr
    examples = held_out_set(qpi, 1, 64)  # 2 sources × 3 noise levels × 4 variants (fine absorption last)
    assert len(examples) == 2 * 12 and {ex.tags for ex in examples} == {(t,) for t, _, _ in qpi.held_out_conditions()}
    rows = {(r.group, r.method.split()[0]): r for r in evaluate(examples, qpi.baselines(), qpi)}
    assert {g for g, _ in rows} == {"cells", "textures", "all", *(t for t, _, _ in qpi.held_out_conditions())}
    assert rows[("all", "iterative")].psnr > rows[("all", "TIE")].psnr + 1  # physics beats its linearisation


def test_evaluate_command_prints_a_table(capsys):
    args = ["--n-per-class", "1", "--size", "48", "--classes", "cells", "--samples", "2", "--steps", "4"]
    args += ["--tile-size", "32"]  # the tiles users run large images on
    assert main(["evaluate", "--model", "qpi", *args]) == 0
    out = capsys.readouterr().out
    assert "| cells | TIE" in out and "| all |" in out


def test_mismatched_pairs_are_rejected_before_training():
    with pytest.raises(PairError, match="twice the input"):
        ArrayPairs(get_task("sr"), [np.zeros((32, 32))], [np.zeros((32, 32))])
    with pytest.raises(PairError, match="NaN"):
        ArrayPairs(get_task("sr"), [np.full((32, 32), np.nan)], [np.zeros((64, 64))])
    with pytest.raises(PairError, match="at least"):
        ArrayPairs(get_task("sr"), [np.zeros((8, 8))], [np.zeros((16, 16))])


def test_defocused_otf_is_normalised_and_blurs_more_with_defocus():
    from napari_cvdm.physics.widefield import defocused_otf

    optics = WidefieldOptics()
    near, far = (np.abs(defocused_otf((64, 64), optics, z)) for z in (0.0, 1.5))
    assert near[0, 0] == pytest.approx(1.0) and far[0, 0] == pytest.approx(1.0)
    f = np.hypot(np.fft.fftfreq(64)[:, None], np.fft.fftfreq(64)[None, :])
    band = (f > 0.05) & (f < 0.25)
    assert far[band].mean() < 0.3 * near[band].mean()  # out of focus: the mid frequencies are gone
    assert near[f > 1.05 * optics.cutoff_cycles_per_pixel].max() < 1e-6  # nothing beyond the cut-off


def test_sr_scenes_put_haze_in_input_and_target_and_the_background_in_the_input_only():
    from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene

    clean = simulate_sr_scene("ccps", (64, 64), SRConditions(300, 0.0), np.random.default_rng(2))
    hazy = simulate_sr_scene("ccps", (64, 64), SRConditions(300, 0.4, 0.8, 1.0), np.random.default_rng(2))
    assert hazy.input.mean() > clean.input.mean() + 0.3 * 300  # background 0.4·P plus haze
    assert hazy.target.mean() > 1.5 * clean.target.mean()  # the haze, not the background, is in the target
    assert np.percentile(hazy.target, 5) > 0.01 * 300 * 4  # a smooth floor under the structures


def test_evaluate_reports_a_method_note_once_for_all_pairs():
    """A method that says something about every result (flat-background retrieval without a background) is
    reported once, with the number of pairs, not once per pair."""
    import warnings

    from napari_cvdm.tasks.base import MethodNote

    sr = get_task("sr")
    examples = held_out_set(sr, 3, 32, classes=["ccps"])

    def noting(x):
        warnings.warn(MethodNote("no background here"), stacklevel=2)
        return sr.baselines(WidefieldOptics())["bicubic"](x)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(examples, {"noting": noting}, sr)
    notes = [str(w.message) for w in caught if issubclass(w.category, MethodNote)]
    assert notes == ["noting: no background here [3 of 3 pairs]"]


def test_a_glowing_cytoplasm_is_imaged_in_input_and_target_and_keeps_the_structure_inside_the_cells():
    from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene

    level = 0.4 * 300
    glow = simulate_sr_scene("ccps", (64, 64), SRConditions(300, 0.0, cytosol=0.4), np.random.default_rng(5))
    assert glow.input.mean() == pytest.approx(glow.target.mean(), rel=0.05)  # the same light on both grids
    inside = glow.target > 0.5 * level
    assert inside.mean() > 0.2 and np.median(glow.target[inside]) == pytest.approx(level, rel=0.2)
    outside = glow.target < 0.02 * level  # beyond the cell's edge (this field has one): no glow, no structure
    assert outside.mean() > 0.05 and glow.target[outside].max() < 0.02 * level
    plain = get_task("sr").simulate("ccps", 32, np.random.default_rng(5))
    drawn = get_task("sr").simulate("ccps", 32, np.random.default_rng(5), variant="cytosol")
    assert np.percentile(drawn[1], 50) > np.percentile(plain[1], 50)
