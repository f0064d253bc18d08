"""Do an image's opposite edges continue each other? A camera crops a larger field, so its first and last
columns (rows) are unrelated; an FFT simulation with wrap-around borders makes a periodic field, whose last column
is the first column's neighbour. Used to warn about inputs no camera records."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["SEAM_LIMIT", "edge_seam_ratio"]

#: An image whose edges continue each other at least this well (:func:`edge_seam_ratio`) looks periodic. Camera
#: crops of the held-out qpi sets and the real pairs stay below 0.35; periodic textures reach 0.8–1.0.
SEAM_LIMIT = 0.6


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b)) / norm if norm > 0 else float("nan")


def _band(line: np.ndarray) -> np.ndarray:
    """Detail of a line between the noise (σ 1.5 px) and slow trends such as uneven illumination (σ 12 px)."""
    return gaussian_filter1d(line, 1.5, mode="nearest") - gaussian_filter1d(line, 12, mode="nearest")


def edge_seam_ratio(image: np.ndarray, min_neighbour: float = 0.5) -> float:
    """How well the last column (row) continues the first, relative to how well the second does, for the worse
    of the two axes: ≈ 1 for a periodic image, ≈ 0 for a crop.

    Parameters
    ----------
    image
        ``(H, W)``, any units.
    min_neighbour
        Neighbouring lines must correlate at least this much (after removing noise and trends) for an axis to
        be judged; otherwise (flat or noise-dominated edges) the result is NaN: no evidence either way.

    Returns
    -------
    float
        ``min over axes of corr(first, last) / corr(first, second)`` of the band-passed edge lines, or NaN.
    """
    x = np.asarray(image, np.float64)
    if x.ndim != 2 or min(x.shape) < 16:
        raise ValueError(f"edge_seam_ratio needs a 2-D image of at least 16 × 16 pixels, got {x.shape}")
    ratios = []
    for img in (x, x.T):
        first, second, last = _band(img[:, 0]), _band(img[:, 1]), _band(img[:, -1])
        neighbour = _correlation(first, second)
        if not neighbour >= min_neighbour:
            return float("nan")
        ratios.append(_correlation(first, last) / neighbour)
    return min(ratios)
