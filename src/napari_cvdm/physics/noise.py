"""Noise estimates from the images themselves (the residual's unit). Intensities in the image's units.

The finest diagonal Haar detail ``(a − b − c + d)/2`` of each 2×2 block has the variance σ² of white noise
and little of a smooth image; its median absolute value / 0.6745 is a robust σ (Donoho's MAD estimate, as in
scikit-image's ``estimate_sigma``, which needs PyWavelets).
"""

from __future__ import annotations

import numpy as np

__all__ = ["haar_detail", "noise_sigma", "noise_level_function"]

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
    d = haar_detail(x).ravel()
    m = local.ravel()
    edges = np.unique(np.quantile(m, np.linspace(0, 1, bins + 1)))
    means, variances = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() >= 32:
            means.append(float(m[sel].mean()))
            variances.append(_robust_variance(d[sel]))
    if len(means) < 2:
        return 0.0, max(noise_sigma(x) ** 2, 1e-12)
    a, b = np.polyfit(means, variances, 1)
    a = max(float(a), 0.0)
    b = max(float(np.mean(variances) - a * np.mean(means)), 0.0)
    if a == 0.0 and b == 0.0:
        b = max(float(np.mean(variances)), 1e-12)
    return a, b
