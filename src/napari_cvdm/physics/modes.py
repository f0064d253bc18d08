"""The modes of a phase that two defocused planes barely see, and where their error lands.

Through the transport-of-intensity relation the planes see the phase's Laplacian (its curvature), weighted by
the intensity: a tilt has none, and a uniform curvature changes both planes by the same amount everywhere,
which dividing by the background takes away. So the polynomials of degree 1 and 2 across the field are what
every retrieval gets wrong most, and a random error in them is largest towards the borders and corners of the
field, whatever the specimen. :func:`low_mode_variance` is the map of that error's variance: where a std should
grow even when the samples of a learned model agree (they share the prior that fixed those modes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["low_mode_variance", "LOW_MODE_DEGREE"]

#: Highest degree of the polynomial modes: tilt (1) and curvature (2).
LOW_MODE_DEGREE = 2

#: The map is built on a grid of at most this many points a side and interpolated (it is smooth).
_GRID = 128


def low_mode_variance(shape: tuple[int, int], degree: int = LOW_MODE_DEGREE) -> np.ndarray:
    """``Σ ψ_k(y, x)²`` over the zero-mean polynomials ``ψ_k`` of degree 1 to ``degree`` across an image of
    ``shape`` ``(H, W)``, orthonormal on its pixels, scaled to mean 1: the variance of an error made of those modes
    with equal, independent weights (1 at the average pixel; about 3–5 at the corners), float32 ``(H, W)``.

    Built on a grid of at most 128 points a side and interpolated linearly (the map is a polynomial of degree
    ``2·degree``), so that it costs little on a large image.
    """
    h, w = (int(n) for n in shape)
    if h < 2 or w < 2 or degree < 1:
        raise ValueError(f"low modes need an image of at least 2 × 2 pixels and degree ≥ 1, got {shape}, {degree}")
    gh, gw = min(h, _GRID), min(w, _GRID)
    y, x = np.meshgrid(np.linspace(-1, 1, gh), np.linspace(-1, 1, gw), indexing="ij")
    columns = [x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i) if i + j > 0]
    basis = np.stack([c.ravel() - c.mean() for c in columns], 1)
    q, _ = np.linalg.qr(basis)  # orthonormal, each column zero-mean
    coarse = np.square(q).sum(1).reshape(gh, gw)
    coarse /= coarse.mean()
    if (gh, gw) == (h, w):
        return coarse.astype(np.float32)
    # bilinear interpolation as two small matrices, the grids' corners on each other: R · coarse · Cᵀ
    v = (_linear_weights(h, gh) @ coarse.astype(np.float32)) @ _linear_weights(w, gw).T
    v /= v.mean()
    return v


def _linear_weights(n: int, m: int) -> np.ndarray:
    """``(n, m)`` float32 weights that interpolate ``m`` evenly spaced samples linearly at ``n`` evenly spaced
    points spanning the same interval."""
    pos = np.linspace(0, m - 1, n)
    lo = np.minimum(np.floor(pos).astype(int), m - 2)
    frac = (pos - lo).astype(np.float32)
    weights = np.zeros((n, m), np.float32)
    weights[np.arange(n), lo] = 1 - frac
    weights[np.arange(n), lo + 1] = frac
    return weights
