"""Noise estimates from the images themselves (the residual's unit). Intensities in the image's units.

The finest diagonal Haar detail ``(a − b − c + d)/2`` of each 2×2 block has the variance σ² of white noise
and little of a smooth image; its median absolute value / 0.6745 is a robust σ (Donoho's MAD estimate, as in
scikit-image's ``estimate_sigma``, which needs PyWavelets).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pair_noise",
    "haar_detail",
    "noise_sigma",
    "noise_level_function",
    "band_noise_level_function",
    "band_noise_level_curve",
    "photon_level",
    "floor_fraction",
]

_MAD_TO_SIGMA = 0.6745
#: E[d²; d² below its 90th percentile] / σ² for Gaussian d.
_TRIMMED_FRACTION = 0.6223


def haar_detail(image: np.ndarray) -> np.ndarray:
    """Finest diagonal Haar detail ``(H//2, W//2)`` of an ``(H, W)`` image (white noise σ → σ)."""
    x = np.asarray(image, np.float64)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    return (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2


def noise_sigma(image: np.ndarray) -> float:
    """Robust σ of additive white noise in an ``(H, W)`` image (same units)."""
    d = haar_detail(image)
    return float(np.median(np.abs(d)) / _MAD_TO_SIGMA)


def _robust_variance(d: np.ndarray) -> float:
    """Variance of the Haar details without the largest tenth (edges of structures), corrected for the trim
    (for Gaussian d the lowest 90 % of d² average 0.6223·σ²). Unlike a median it does not
    collapse to 0 on integer-valued images."""
    sq = np.sort(d**2)
    keep = sq[: max(1, int(0.9 * sq.size))]
    return float(keep.mean() / _TRIMMED_FRACTION)


def noise_level_function(image: np.ndarray, bins: int = 8) -> tuple[float, float]:
    """Signal-dependent noise ``σ²(x) = a·x + b`` (Poisson–Gaussian: photon noise and read noise) of an
    ``(H, W)`` image, fitted to the robust variance of the Haar detail in ``bins`` intensity bins.

    Returns
    -------
    a, b
        Slope (image units) and offset (image units²), both ≥ 0 and not both 0.
    """
    x = np.asarray(image, np.float64)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    local = (x[0:h:2, 0:w:2] + x[0:h:2, 1:w:2] + x[1:h:2, 0:w:2] + x[1:h:2, 1:w:2]) / 4
    line = _binned_line(local.ravel(), haar_detail(x).ravel(), bins, 32)
    return line if line is not None else (0.0, max(noise_sigma(x) ** 2, 1e-12))


def _binned_variances(means: np.ndarray, noise: np.ndarray, bins: int, min_count: int) -> tuple[list, list]:
    """The mean of ``means`` and the robust variance of the ``noise`` samples in each of ``bins`` intensity
    quantile bins of ``means`` that hold at least ``min_count`` samples, in increasing order."""
    edges = np.unique(np.quantile(means, np.linspace(0, 1, bins + 1)))
    m, v = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (means >= lo) & (means <= hi)
        if sel.sum() >= min_count:
            m.append(float(means[sel].mean()))
            v.append(_robust_variance(noise[sel]))
    return m, v


def _binned_line(means: np.ndarray, noise: np.ndarray, bins: int, min_count: int) -> tuple[float, float] | None:
    """``(a, b)`` of ``variance ≈ a·mean + b``: the robust variance of the ``noise`` samples against their local
    ``means`` in ``bins`` intensity quantile bins, fitted by a line (both ≥ 0); ``None`` with fewer than two
    usable bins."""
    m, v = _binned_variances(means, noise, bins, min_count)
    if len(m) < 2:
        return None
    a = max(float(np.polyfit(m, v, 1)[0]), 0.0)
    b = max(float(np.mean(v) - a * np.mean(m)), 0.0)
    return (a, b) if a > 0 or b > 0 else (0.0, max(float(np.mean(v)), 1e-12))


def band_noise_level_function(image: np.ndarray, cutoff: float, bins: int = 8) -> tuple[float, float]:
    """Poisson–Gaussian noise ``σ²(x) = a·x + b`` of an ``(H, W)`` image measured only at spatial frequencies
    above ``cutoff`` (cycles per pixel), where an optical system with that cut-off passes no signal: unlike
    :func:`noise_level_function` it is not inflated by sharp, bright structures.

    The image is high-passed in Fourier space (a fraction ``q`` of the frequencies kept, so white noise keeps
    ``q·σ²``), divided by ``√q`` and its robust variance binned against the local mean (5×5 box) away from a
    4-pixel border.

    Parameters
    ----------
    cutoff
        Highest frequency the optics pass, cycles per pixel (< 0.45, so that there is a band of noise).

    Returns
    -------
    a, b
        Slope (image units) and offset (image units²), both ≥ 0 and not both 0.
    """
    local, noise = _band_noise_samples(image, cutoff)
    line = _binned_line(local, noise, bins, 64)
    return line if line is not None else (0.0, max(_robust_variance(noise), 1e-12))


def _band_noise_samples(image: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """``(local mean, noise)`` per pixel of an ``(H, W)`` image away from a 4-pixel border: its 5×5 box mean and
    its part above ``1.15 × cutoff`` cycles per pixel, scaled so that white noise keeps its variance."""
    from scipy.ndimage import uniform_filter

    if not 0 < cutoff < 0.45:
        raise ValueError(f"the optical cut-off must lie between 0 and 0.45 cycles per pixel, got {cutoff:.3f}")
    x = np.asarray(image, np.float64)
    h, w = x.shape
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    keep = f > 1.15 * cutoff
    high = np.real(np.fft.ifft2(np.fft.fft2(x) * keep))
    inner = (slice(4, max(h - 4, 5)), slice(4, max(w - 4, 5)))
    local = uniform_filter(x, 5, mode="reflect")[inner].ravel()
    return local, high[inner].ravel() / np.sqrt(keep.mean())


#: Pixels :func:`band_noise_level_curve` bins at most (evenly strided through the image).
_CURVE_SAMPLES = 1 << 20


def band_noise_level_curve(image: np.ndarray, cutoff: float, bins: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The noise variance of an ``(H, W)`` image against its local mean, measured as
    :func:`band_noise_level_function` does but kept as a curve: the robust variance in ``bins`` intensity quantile
    bins (at least 64 pixels each), made non-decreasing. Unlike the line ``a·x + b`` it needs no model of the camera:
    an offset (raw counts of a camera that adds 100 to every pixel) makes the dark bins' variance the read noise,
    not ``a·100``.

    Returns
    -------
    means, variances
        Increasing bin means (image units) and their variances (image units²), for :func:`numpy.interp`; one bin
        when the image has too few pixels to bin.
    """
    local, noise = _band_noise_samples(image, cutoff)
    step = max(1, local.size // _CURVE_SAMPLES)  # every step-th pixel: plenty for 16 variances, 4× faster at 4096²
    local, noise = local[::step], noise[::step]
    m, v = _binned_variances(local, noise, bins, 64)
    if not m:
        return np.array([float(np.mean(local))]), np.array([max(_robust_variance(noise), 1e-12)])
    return np.asarray(m), np.maximum.accumulate(np.maximum(np.asarray(v), 1e-12))


def photon_level(image: np.ndarray, gain: float) -> float:
    """Photons per pixel of the brightest structures: the 99.9th minus the 1st percentile of the image
    (2×2-smoothed), divided by the noise slope ``gain`` of its noise-level function (image units per photon).
    Infinite when the noise shows no photon term."""
    from scipy.ndimage import uniform_filter

    lo, hi = np.percentile(uniform_filter(np.asarray(image, np.float64), 2), [1, 99.9])
    return float((hi - lo) / gain) if gain > 0 else float("inf")


def floor_fraction(image: np.ndarray) -> float:
    """The share of pixels that sit exactly at the image's lowest value: near 0 for a camera's image (its noise
    spreads the darkest pixels), large for one clipped at a floor (a background subtracted and negative values set
    to zero, a camera without offset).

    Parameters
    ----------
    image
        ``(H, W)`` in any units.
    """
    x = np.asarray(image)
    return float(np.mean(x == x.min()))


def pair_noise(planes: np.ndarray) -> float:
    """σ of the noise of a pair ``(2, H, W)`` (units of the background), estimated from the planes themselves
    and averaged over both (at least 10⁻⁶, so that it can divide)."""
    return max(float(np.mean([noise_sigma(p) for p in planes])), 1e-6)
