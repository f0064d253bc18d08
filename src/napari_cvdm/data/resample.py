"""Resampling images to another grid (the last two axes), for physics similarity."""

from __future__ import annotations

import numpy as np

__all__ = ["resample_last_two"]


def resample_last_two(values: np.ndarray, shape: tuple[int, int], variance: bool = False) -> np.ndarray:
    """``values`` ``(..., H, W)`` resampled to ``(..., shape[0], shape[1])``, float32.

    Images are resampled band-limited (:func:`band_limited_resample`): what lies below both grids' Nyquist
    frequency keeps its amplitude, nothing aliases, and the border is mirrored rather than wrapped. With
    ``variance`` the values are a std map, resampled as a variance by linear interpolation (non-negative, its
    level kept).
    """
    arr = np.asarray(values)
    if arr.shape[-2:] == tuple(shape):
        return np.asarray(arr, np.float32)
    if variance:
        return _linear_variance(arr.astype(np.float64), shape)
    flat = arr.reshape(-1, *arr.shape[-2:])
    out = np.empty((len(flat), *shape), np.float32)
    for k, plane in enumerate(flat):  # plane by plane: a stack of samples is never copied whole to float64
        out[k] = band_limited_resample(plane, shape)
    return out.reshape(*arr.shape[:-2], *shape)


def band_limited_resample(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``values`` ``(..., H, W)`` on the grid ``(..., shape[0], shape[1])`` spanning the same field.

    The cosine transform of the image mirrored at its borders (a DCT-II) is cut to, or padded with zeros to,
    the new size: the exact band-limited interpolation of the mirrored image. Shrinking keeps every frequency
    below the new Nyquist unchanged and removes those above (no blur below it, no aliasing above it, as an
    anti-aliasing Gaussian would blur and alias); enlarging adds no frequency the image did not hold.
    Pixel centres map as in :func:`skimage.transform.resize` (the field's edges coincide). float64.
    """
    from scipy.fft import dctn, idctn

    arr = np.asarray(values, np.float64)
    (h0, w0), (h1, w1) = arr.shape[-2:], shape
    coefficients = dctn(arr, type=2, norm="ortho", axes=(-2, -1))
    kept = np.zeros((*arr.shape[:-2], h1, w1))
    kh, kw = min(h0, h1), min(w0, w1)
    kept[..., :kh, :kw] = coefficients[..., :kh, :kw]
    return idctn(kept, type=2, norm="ortho", axes=(-2, -1)) * np.sqrt(h1 * w1 / (h0 * w0))


def _linear_variance(std: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A std map ``(..., H, W)`` resampled as a variance (linear, low-passed where it shrinks), float32."""
    from skimage.transform import resize

    lead = std.shape[:-2]
    flat = std.reshape(-1, *std.shape[-2:]) ** 2
    shrink = shape[0] < std.shape[-2] or shape[1] < std.shape[-1]
    out = np.stack([resize(p, shape, order=1, anti_aliasing=shrink, mode="reflect") for p in flat])
    return np.sqrt(np.maximum(out, 0)).reshape(*lead, *shape).astype(np.float32)
