"""Do an image's opposite edges continue each other? A camera crops a larger field, so its first and last
columns (rows) are unrelated; an FFT simulation with wrap-around borders makes a periodic field, whose last column
is the first column's neighbour. Used to warn about inputs no camera records.

Two signatures, each enough for a warning: edges that continue each other (:func:`edge_seam_ratio`; a periodic
object), and defocus fringes crowding two opposite borders (:func:`border_fringe_ratio`; a non-periodic object
propagated as if periodic has a phase step at the seam, and its fringes light up both sides of it)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = [
    "SEAM_LIMIT",
    "FRINGE_LIMIT",
    "SEAM_CORRELATION_LIMIT",
    "edge_seam_ratio",
    "border_fringe_ratio",
    "seam_correlation",
]

#: An image whose edges continue each other at least this well (:func:`edge_seam_ratio`) looks periodic. Camera
#: crops of the held-out qpi sets and the real pairs stay below 0.35; periodic textures reach 0.8–1.0.
SEAM_LIMIT = 0.6
#: Planes whose difference varies at least this many times more along two opposite borders than inside carry a
#: seam's fringes ...
FRINGE_LIMIT = 3.0
#: ... as do planes whose difference along two opposite borders correlates at least this much (either sign).
#: On the 72 realistic held-out camera crops (cells, textures, photos; σ 0.005–0.02) and 18 more, the ratio stays
#: at or below 2.45 and the correlation at or below 0.46; wrap-around simulations of the same 72 phases reach
#: either limit on 21 of 24 cells, 22 of 24 textures and 4 of 24 photos (whose own contrast hides the seam;
#: ``runs/qpi/seam_stats.py``).
SEAM_CORRELATION_LIMIT = 0.6


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


def _robust_rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.median(np.square(values))))


def border_fringe_ratio(planes: np.ndarray, width: int = 2, inset: int = 8) -> float:
    """How much more the planes' difference ``I₊ − I₋`` (the phase's curvature) varies along two opposite
    borders than inside the image, for the worse of the two axes.

    Parameters
    ----------
    planes
        ``(2, H, W)`` intensities at (−dz, +dz), any common unit; at least 32 × 32 pixels.
    width
        Pixels of each border strip.
    inset
        Pixels left out around the interior the strips are compared with.

    Returns
    -------
    float
        ``max over axes of min(strip a, strip b) / interior``, each a robust RMS (square root of the median
        square) of the difference less its median: ≈ 1 or below for a camera crop, ≫ 1 for a wrap-around
        simulation of an object that differs across the seam; NaN when the interior has no variation.
    """
    x = np.asarray(planes, np.float64)
    if x.ndim != 3 or x.shape[0] != 2 or min(x.shape[1:]) < 32:
        raise ValueError(f"border_fringe_ratio needs two planes of at least 32 × 32 pixels, got {x.shape}")
    d = x[1] - x[0]
    d = d - np.median(d)
    inner = _robust_rms(d[inset:-inset, inset:-inset])
    if not inner > 0:
        return float("nan")
    columns = min(_robust_rms(d[:, :width]), _robust_rms(d[:, -width:]))
    rows = min(_robust_rms(d[:width]), _robust_rms(d[-width:]))
    return max(columns, rows) / inner


def seam_correlation(planes: np.ndarray) -> float:
    """How closely the planes' difference ``I₊ − I₋`` on the first line mirrors the last, for the worse of the
    two axes: a phase step at a periodic seam makes fringes on both sides of it, line for line.

    Parameters
    ----------
    planes
        ``(2, H, W)`` intensities at (−dz, +dz), any common unit.

    Returns
    -------
    float
        ``max over axes of |corr(first line, last line)|`` of the difference, 0 to 1 (0 for flat lines).
    """
    x = np.asarray(planes, np.float64)
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError(f"seam_correlation needs two planes (2, H, W), got {x.shape}")
    d = x[1] - x[0]
    found = [abs(_correlation(img[:, 0], img[:, -1])) for img in (d, d.T)]
    return max((c for c in found if c == c), default=0.0)  # NaN (a flat line) is no evidence
