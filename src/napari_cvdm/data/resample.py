"""Resampling images to another grid (the last two axes), for physics similarity."""

from __future__ import annotations

import numpy as np

__all__ = ["resample_last_two"]


def resample_last_two(values: np.ndarray, shape: tuple[int, int], variance: bool = False) -> np.ndarray:
    """``values`` ``(..., H, W)`` resampled to ``(..., shape[0], shape[1])`` by cubic splines, low-passed first
    where it shrinks (no aliasing); ``variance``: a std map, resampled as a variance (linear, non-negative).
    float32."""
    from skimage.transform import resize

    arr = np.asarray(values, np.float64)
    if arr.shape[-2:] == tuple(shape):
        return np.asarray(values, np.float32)
    lead = arr.shape[:-2]
    flat = arr.reshape(-1, *arr.shape[-2:])
    shrink = shape[0] < arr.shape[-2] or shape[1] < arr.shape[-1]
    work = flat**2 if variance else flat
    out = np.stack([resize(p, shape, order=1 if variance else 3, anti_aliasing=shrink, mode="reflect") for p in work])
    out = np.sqrt(np.maximum(out, 0)) if variance else out
    return out.reshape(*lead, *shape).astype(np.float32)
