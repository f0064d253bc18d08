"""A SIM reference for the real TIRF-SIM raw frames: a Wiener reconstruction of the 9 frames (3 orientations × 3
phases) on the 2× grid, with the same resolution the `sr` model is trained to give (the widefield transfer function
stretched twice as far). Written beside it: the widefield image the model reads (the mean of the 9 frames), the
Wiener filter's damping, which `napari-cvdm evaluate-real` applies to every result before scoring it, and the
std of the reconstruction's own noise, which it joins to each result's std (docs/experiments/rdlsim_pairs.json).

    python docs/experiments/rdlsim_sim_reference.py RAW.tif OTF.tif OUT_FOLDER [WIENER] [TARGET] [ORDERS]

RAW: ../shared/data/real-pairs/rdlsim_mt_raw9_tirfsim.tif; OTF: rdlsim_otf488_radial_re_im.tif beside it (its radial
axis read as 0.0312 µm⁻¹ per sample, the file's cell value: its support then ends at 2·NA/λ for NA 1.35 and 520 nm).
WIENER: the Wiener parameter (default 0.1; smaller is sharper and noisier). TARGET: the resolution the reference is
given, ``measured`` (default: the shipped OTF stretched twice as far, what a SIM of this microscope shows) or ``airy``
(the ideal Airy pattern of NA 2 × 1.35 at 520 nm, what ``sr`` is trained to give). ORDERS: ``all`` (default) or
``sidebands`` (the ±1 orders alone, :func:`combine_sidebands`: a reference whose noise the widefield image does not
share, for the band those orders cover).

The pattern: the source's illumination (488 nm, excitation NA 1.35: a period of 1/(2·1.35/0.488) µm, 88.7 cycles
across the 256-pixel frame at 62.6 nm) is below the detection's noise floor in every single frame, so each
orientation's wave vector is searched on a ring around that frequency by the correlation of the separated bands
where they overlap; the three found lie 60° apart. Each band's complex weight (modulation and phase) is fitted in
the overlap. A generic SIM package (napari-sim-processor 0.1.1) found no carrier on these frames.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_cvdm.physics.noise import noise_sigma
from napari_cvdm.physics.widefield import airy_psf

N_FRAMES, PIXEL_UM = 9, 0.0626
K0 = 2 * 1.35 / 0.488  # µm⁻¹, the illumination's spatial frequency
OTF_STEP = 0.0312  # µm⁻¹ per sample of the radial OTF
OVERLAP_RADIUS = 60  # frequency pixels (of the 256 grid) where the widefield spectrum stands above its noise floor
WIENER = 0.1  # default


def radial_otf(path: str):
    """A function of the spatial frequency (µm⁻¹) → the shipped OTF's real part, 0 beyond its samples."""
    re = tifffile.imread(path)[0].astype(np.float64)
    re = np.clip(re / re[0], 0, None)
    f = np.arange(re.size) * OTF_STEP
    return lambda k: np.interp(k, f, re, right=0.0)


def separate(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra of the 0 and ±1 orders of one orientation's three frames (phases 0, 2π/3, 4π/3)."""
    f = np.fft.fft2(frames)
    w = np.exp(-2j * np.pi * np.arange(3) / 3)
    return f.mean(0), np.tensordot(w, f, 1) / 3, np.tensordot(w.conj(), f, 1) / 3


def shifted(spectrum: np.ndarray, p: tuple[float, float], n: int) -> np.ndarray:
    """``spectrum`` (n×n grid) moved by ``-p`` frequency pixels (sub-pixel, through real space)."""
    y, x = np.indices(spectrum.shape)
    return np.fft.fft2(np.fft.ifft2(spectrum) * np.exp(-2j * np.pi * (p[0] * y + p[1] * x) / n))


def overlap_fit(d0, d1, p, otf_px, n):
    """Correlation and complex weight ``c`` of the +1 band moved by ``p`` against the 0 band where both carry
    signal: ``d1(k + p) ≈ c · OTF(k + p) · S(k)`` and ``d0(k) = OTF(k) · S(k)`` (``otf_px=None``: the plain
    correlation of the two, which the search uses: the OTF weights lift the noise near the cut-off)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(n) * n, np.fft.fftfreq(n) * n, indexing="ij")
    inside = np.hypot(fy, fx) < OVERLAP_RADIUS
    s1 = shifted(d1 * inside, p, n)
    r0, r1 = np.hypot(fy, fx), np.hypot(fy + p[0], fx + p[1])
    ov = inside & (r1 < OVERLAP_RADIUS) & (r0 > 4)
    a, b = (d0[ov], s1[ov]) if otf_px is None else (d0[ov] * otf_px(r1[ov]), s1[ov] * otf_px(r0[ov]))
    corr = abs(np.vdot(a, b)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real)
    return corr, np.vdot(a, b) / np.vdot(a, a)


def find_carrier(d0, d1, n, k0_px):
    """The +1 order's wave vector (frequency pixels): the best overlap on a ring of ±10 % around ``k0_px``, by
    1° and 1 pixel, then by 0.1° and 0.1 pixel."""
    best = (0.0, 0.0, 0.0)
    for step_a, step_k, around in ((1.0, 1.0, None), (0.1, 0.1, True)):
        if around:
            angles = best[1] + np.arange(-1.5, 1.6, step_a)
            ks = best[2] + np.arange(-1.5, 1.6, step_k)
        else:
            angles, ks = np.arange(0, 360, step_a), np.arange(0.9 * k0_px, 1.1 * k0_px, step_k)
        for a in angles:
            for k in ks:
                p = (k * np.sin(np.radians(a)), k * np.cos(np.radians(a)))
                corr = overlap_fit(d0, d1, p, None, n)[0]
                if corr > best[0]:
                    best = (corr, a, k)
    return best


def pattern(raw: np.ndarray, otf_px) -> list:
    """Per orientation: the +1 order's wave vector (frequency pixels), its complex weight and what was found
    (overlap correlation, angle °, |k| px, |c|); refuses orientations that are not 60° apart."""
    n = raw.shape[-1]
    df = 1 / (n * PIXEL_UM)
    found = []
    for o in range(3):
        d0, dp, _ = separate(raw[3 * o : 3 * o + 3])
        corr, angle, k = find_carrier(d0, dp, n, K0 / df)
        p = (k * np.sin(np.radians(angle)), k * np.cos(np.radians(angle)))
        c = overlap_fit(d0, dp, p, otf_px, n)[1]
        found.append((p, c, (round(corr, 3), round(angle, 1), round(k, 1), round(abs(c), 3))))
    spacing = sorted(f[2][1] % 180 for f in found)
    if not all(abs(b - a - 60) < 3 for a, b in zip(spacing, spacing[1:])):
        raise SystemExit(f"the three orientations found are not 60° apart: {[f[2] for f in found]}")
    return found


def combine(raw: np.ndarray, found: list, otf_px, wiener: float, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Wiener SIM image of the 9 frames on the 2× grid (linear in the frames) with the transfer ``target``
    (``numpy.fft`` order on that grid) and the Wiener filter's damping ``Σ|h|²/(Σ|h|² + w²)`` (what the image is,
    beyond the resolution ``target`` gives)."""
    return _combine(raw, found, otf_px, wiener, target, (0, 1, -1))


def combine_sidebands(
    raw: np.ndarray, found: list, otf_px, wiener: float, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`combine` from the ±1 orders alone: its noise is independent of the widefield image's (the 0 order;
    the three phases' DFT separates independent frame noise into independent orders), so a result that keeps the
    input's noise gains nothing from it; the lowest frequencies, which only the 0 order carries, are left out
    (the damping is near zero there)."""
    return _combine(raw, found, otf_px, wiener, target, (1, -1))


def _combine(raw, found, otf_px, wiener: float, target: np.ndarray, orders: tuple[int, ...]):
    n = raw.shape[-1]
    m, h = 2 * n, n // 2
    fy, fx = np.meshgrid(np.fft.fftfreq(m) * m, np.fft.fftfreq(m) * m, indexing="ij")
    num, den = np.zeros((m, m), complex), np.zeros((m, m))
    for o, (p, c, _) in enumerate(found):
        for band, sign, weight in zip(separate(raw[3 * o : 3 * o + 3]), (0, 1, -1), (1.0, c, np.conj(c))):
            if sign not in orders:
                continue
            big = np.zeros((m, m), complex)  # the band on the 2× grid (zero-padded spectrum)
            for sy, ty in ((slice(0, h), slice(0, h)), (slice(n - h, n), slice(m - h, m))):
                for sx, tx in ((slice(0, h), slice(0, h)), (slice(n - h, n), slice(m - h, m))):
                    big[ty, tx] = band[sy, sx] * 4  # the 2× grid's inverse FFT divides by 4× more pixels
            moved = shifted(big, (sign * p[0], sign * p[1]), m) if sign else big
            h_b = otf_px(np.hypot(fy + sign * p[0], fx + sign * p[1])) * weight
            num += np.conj(h_b) * moved / (3 if sign == 0 else 1)
            den += np.abs(h_b) ** 2 / (3 if sign == 0 else 1)
    image = np.fft.ifft2(num / (den + wiener**2) * target).real
    return image.astype(np.float32), (den / (den + wiener**2)).astype(np.float32)


def stretched_target(otf_px, m: int) -> np.ndarray:
    """The shipped widefield OTF stretched twice as far, on the ``m × m`` 2× grid (``numpy.fft`` order)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(m) * m, np.fft.fftfreq(m) * m, indexing="ij")
    return otf_px(np.hypot(fy, fx) / 2)


def airy_target(m: int) -> np.ndarray:
    """The OTF of the ideal Airy pattern of NA 2 × 1.35 at 520 nm on the ``m × m`` 2× grid (``numpy.fft`` order)."""
    psf = airy_psf(2 * 1.35, 0.52, PIXEL_UM / 2)
    pad = np.zeros((m, m))
    pad[: psf.shape[0], : psf.shape[1]] = psf / psf.sum()
    return np.fft.fft2(np.roll(pad, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))).real


def noise_std(
    raw: np.ndarray, found: list, otf_px, wiener: float, target: np.ndarray, draws: int = 4, rebuild=combine
) -> float:
    """The std of the reconstruction's own noise: white noise of the frames' level (each frame's robust σ, their
    mean variance) put through the same linear reconstruction ``rebuild``, over ``draws`` draws (photon noise,
    which follows the signal, is taken as uniform)."""
    sigma = float(np.sqrt(np.mean([noise_sigma(f) ** 2 for f in raw])))
    rng = np.random.default_rng(0)
    out = [rebuild(sigma * rng.standard_normal(raw.shape), found, otf_px, wiener, target)[0] for _ in range(draws)]
    return float(np.std(out))


def main(
    raw_path: str, otf_path: str, out: str, wiener: str = str(WIENER), target: str = "measured", orders: str = "all"
) -> None:
    if target not in ("measured", "airy"):
        raise SystemExit(f"TARGET {target!r}: give measured or airy")
    if orders not in ("all", "sidebands"):
        raise SystemExit(f"ORDERS {orders!r}: give all or sidebands")
    rebuild = combine if orders == "all" else combine_sidebands
    raw = tifffile.imread(raw_path).astype(np.float64)
    if raw.shape[0] != N_FRAMES:
        raise SystemExit(f"{raw_path}: expected {N_FRAMES} frames, got {raw.shape}")
    raw -= np.percentile(raw, 1)
    otf = radial_otf(otf_path)
    otf_px = lambda r: otf(r / (raw.shape[-1] * PIXEL_UM))  # noqa: E731 (r in frequency pixels)
    found = pattern(raw, otf_px)
    m = 2 * raw.shape[-1]
    transfer = stretched_target(otf_px, m) if target == "measured" else airy_target(m)
    image, damping = rebuild(raw, found, otf_px, float(wiener), transfer)
    std = noise_std(raw, found, otf_px, float(wiener), transfer, rebuild=rebuild)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "rdlsim_wf_mean9.tif", raw.mean(0).astype(np.float32))
    tifffile.imwrite(folder / "rdlsim_sim_wiener.tif", image)
    tifffile.imwrite(folder / "rdlsim_sim_transfer.tif", damping)
    tifffile.imwrite(folder / "rdlsim_sim_std.tif", np.full(image.shape, std, np.float32))
    for o, (_, _, f) in enumerate(found):
        print(f"orientation {o}: overlap correlation {f[0]}, angle {f[1]}°, |k| {f[2]} px, |c| {f[3]}")
    print(
        f"noise of the reconstruction: σ {std:.4g} (its values: 1st–99th percentile {np.percentile(image, 1):.4g} to "
        f"{np.percentile(image, 99):.4g})"
    )


if __name__ == "__main__":
    main(*sys.argv[1:7])
