"""Does the real TIRF-SIM benchmark rank methods as the truth does? The same reference pipeline run on simulated
frames whose truth is known.

    python docs/experiments/rdlsim_reference_check.py OTF.tif [N_FIELDS] [DENSITY] [FIELD] [MODEL] [MODULATION]

OTF.tif: ../shared/data/real-pairs/rdlsim_otf488_radial_re_im.tif. Each field: microtubules (the simulator's class,
DENSITY times as many filaments, default 1) on a 16 µm field; FIELD ``cytosol`` puts them inside cells
(``cytoplasm_footprint``) whose cytoplasm glows at 0.3 of the filaments' widefield brightness, as the real frames'
cell does (default ``plain``: no cells). Imaged as the real frames are: 9 TIRF-SIM frames (3 orientations 60° apart
× 3 phases, illumination period of 488 nm at NA 1.35, modulation MODULATION, default 0.8; the modulation weights
found are printed, to compare with the real frames' weak ones) through the shipped OTF at 62.6 nm pixels, about 150
photons at the brightest, 30 % background, read noise 2; then reconstructed by
``rdlsim_sim_reference.py`` (pattern found from the frames, Wiener 0.1, TARGET measured). The widefield image is the
mean of the 9 frames. Scored as ``evaluate-real`` scores (after the reference's damping, inner part, affine fit):
bicubic, Richardson–Lucy at the stated optics and tuned against the reference (as ``evaluate-real`` runs them),
the bundled ``sr`` or MODEL (a model file; 8 samples, 8 steps, on the camera grid), against five references: the
reconstruction (which shares the widefield image's noise: both are made of the same frames, as on the real pair),
the reconstruction of an independent exposure of the same frames (the pattern found on the first), the first
exposure's ±1 orders alone (``combine_sidebands``: noise independent of the widefield image's, the lowest
frequencies left out), and the truth (the fluorophores through the same target transfer, noise-free) through the
reconstruction's and through the sidebands' damping. fp32: set NAPARI_CVDM_FP32=1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from rdlsim_sim_reference import K0, PIXEL_UM, combine, combine_sidebands, pattern, radial_otf, stretched_target  # noqa: E402
from sr_told_blur import mean_of  # noqa: E402

from napari_cvdm.data.simulate import FINE  # noqa: E402
from napari_cvdm.data.structures import _draw_lines, cytoplasm_footprint  # noqa: E402
from napari_cvdm.inference.models import load_model  # noqa: E402
from napari_cvdm.jobs.real_pairs import BORDER, RealPair, affine_psnr, tuned_richardson_lucy  # noqa: E402
from napari_cvdm.physics.widefield import (  # noqa: E402
    DEFAULT_RL_ITERATIONS,
    WidefieldOptics,
    bicubic_upsample,
    camera_noise,
    richardson_lucy_sr,
)

SIDE, PHOTONS, BACKGROUND = 256, 150.0, 0.3
GLOW = 0.3  # the cytoplasm's glow in the ``cytosol`` fields, fraction of the filaments' brightest widefield value
OPTICS = WidefieldOptics(na=1.35, wavelength_um=0.52, pixel_um=PIXEL_UM)


def fluorophores(rng: np.random.Generator, density: float) -> np.ndarray:
    """Microtubules on the fine grid ``(FINE·SIDE)²`` (the simulator's drawing, ``density`` times the filaments)."""
    from scipy.ndimage import gaussian_filter

    p = PIXEL_UM / FINE
    c = np.zeros((FINE * SIDE, FINE * SIDE))
    count = int(density * rng.integers(6, 20) * 4)  # the training fields' 6–20 per 4 µm, in a 16 µm field
    _draw_lines(c, rng, count, (3 / p, 15 / p), 8 / p, (0.6, 1.0))
    return gaussian_filter(c, 0.0125 / p)


def in_cells(density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``density`` kept inside cells whose cytoplasm glows at :data:`GLOW` of its brightest widefield value (the
    widefield read through a Gaussian of the Airy pattern's width)."""
    from scipy.ndimage import gaussian_filter

    p = PIXEL_UM / FINE
    footprint = cytoplasm_footprint(density.shape, p, rng)
    peak = np.percentile(gaussian_filter(density, 0.21 * OPTICS.wavelength_um / OPTICS.na / p), 99.9)
    return density * footprint + GLOW * peak * footprint


def clean_frames(density: np.ndarray, otf, rng: np.random.Generator, modulation: float) -> np.ndarray:
    """The 9 noise-free camera frames ``(9, SIDE, SIDE)`` of ``density`` under the three orientations' three
    phases of an illumination ``1 + modulation·cos(…)``, in photons (the mean's 99.9th percentile :data:`PHOTONS`)."""
    n = density.shape[0]
    y, x = (np.indices(density.shape) + 0.5) * PIXEL_UM / FINE
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) / (PIXEL_UM / FINE)
    transfer = otf(f)
    angle0 = rng.uniform(0, np.pi / 3)
    clean = []
    for o in range(3):
        a = angle0 + o * np.pi / 3
        for k in range(3):
            light = 1 + modulation * np.cos(2 * np.pi * K0 * (np.sin(a) * y + np.cos(a) * x) + 2 * np.pi * k / 3)
            image = np.fft.ifft2(np.fft.fft2(density * light) * transfer).real
            clean.append(image.reshape(SIDE, FINE, SIDE, FINE).sum(axis=(1, 3)))
    scale = PHOTONS / np.percentile(np.mean(clean, axis=0), 99.9)
    return np.stack([np.clip(c, 0, None) * scale for c in clean])


def exposed(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One noisy exposure of the frames (camera noise on a background of ``BACKGROUND·PHOTONS``), its 1st
    percentile subtracted as the real frames' is."""
    raw = np.stack([camera_noise(c, BACKGROUND * PHOTONS, 2.0, rng) for c in clean])
    return raw - np.percentile(raw, 1)


def truth(density: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The fluorophores on the 2× grid through ``target`` (``numpy.fft`` order there), noise-free."""
    m = 2 * SIDE
    binned = density.reshape(m, FINE // 2, m, FINE // 2).sum(axis=(1, 3))
    return np.fft.ifft2(np.fft.fft2(binned) * target).real


def references(raw: np.ndarray, again: np.ndarray, otf_px, target: np.ndarray) -> dict[str, RealPair]:
    """The widefield mean of ``raw`` paired with three references: its own reconstruction (which shares its noise,
    as the real pair's does), the reconstruction of an independent exposure ``again`` of the same frames (the
    pattern found on ``raw``), and ``raw``'s ±1 orders alone (:func:`combine_sidebands`)."""
    found = pattern(raw, otf_px)
    print("found (overlap correlation, angle °, |k| px, |c|):", [f[2] for f in found])
    made = {
        "reconstruction": combine(raw, found, otf_px, 0.1, target),
        "independent": combine(again, found, otf_px, 0.1, target),
        "sidebands": combine_sidebands(raw, found, otf_px, 0.1, target),
    }
    wide = raw.mean(0)
    return {k: RealPair(k, wide, im.astype(np.float64), {}, d.astype(np.float64)) for k, (im, d) in made.items()}


def scores(refs: dict[str, RealPair], true: np.ndarray, net) -> dict[str, list[float]]:
    """Method → PSNR against each reference and against the truth through the reconstruction's and the sidebands'
    damping; the methods as ``evaluate-real`` runs them (Richardson–Lucy at its default iterations, and tuned
    against each reference; against the truth, the one tuned against the reference of that damping)."""
    x = refs["reconstruction"].input
    results = {
        "bicubic": bicubic_upsample(x, 2),
        "Richardson–Lucy, stated optics": richardson_lucy_sr(x, OPTICS, DEFAULT_RL_ITERATIONS),
        "CVDM sr": mean_of(net, x.astype(np.float32), None),
    }
    truths = {k: refs[k].as_reference_sees(true) for k in ("reconstruction", "sidebands")}
    out: dict[str, list[float]] = {}
    for name, result in results.items():
        out[name] = [affine_psnr(p.as_reference_sees(result), p.reference) for p in refs.values()]
        out[name] += [affine_psnr(refs[k].as_reference_sees(result), t) for k, t in truths.items()]
    tuned = {k: tuned_richardson_lucy(pair, OPTICS)[0] for k, pair in refs.items()}
    name = "Richardson–Lucy tuned on the reference"
    out[name] = [affine_psnr(tuned[k], p.reference) for k, p in refs.items()]
    out[name] += [affine_psnr(tuned[k], t) for k, t in truths.items()]
    return out


COLUMNS = (
    "against the reconstruction",
    "against an independent reconstruction",
    "against the sidebands",
    "against the truth",
    "against the truth, sidebands' band",
)


def main(
    otf_path: str,
    n_fields: str = "3",
    density: str = "1",
    field: str = "plain",
    model: str = "sr",
    modulation: str = "0.8",
) -> None:
    otf = radial_otf(otf_path)
    otf_px = lambda r: otf(r / (SIDE * PIXEL_UM))  # noqa: E731 (r in frequency pixels)
    target = stretched_target(otf_px, 2 * SIDE)
    if field not in ("plain", "cytosol"):
        raise SystemExit(f"FIELD {field!r}: give plain or cytosol")
    net = load_model(model).network
    rows: dict[str, list[list[float]]] = {}
    for i in range(int(n_fields)):
        rng = np.random.default_rng([20261203, i])
        dens = fluorophores(rng, float(density))
        dens = in_cells(dens, rng) if field == "cytosol" else dens
        clean = clean_frames(dens, otf, rng, float(modulation))
        raw, again = exposed(clean, rng), exposed(clean, np.random.default_rng([20261203, i, 1]))
        for name, values in scores(references(raw, again, otf_px, target), truth(dens, target), net).items():
            rows.setdefault(name, []).append(values)
            print(f"field {i}: {name}: " + ", ".join(f"{v:.2f} {c}" for v, c in zip(values, COLUMNS)))
    print(f"\nmean of {n_fields} fields, inner part (border {BORDER} output pixels), PSNR in dB after an affine fit:")
    print("| method | " + " | ".join(COLUMNS) + " |\n" + "|---" * (len(COLUMNS) + 1) + "|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in np.mean(values, axis=0)) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:7])
