"""Brightfield images as a camera writes them, made into what the qpi task takes: a defocused pair ``(2, H, W)``
ordered (−dz, +dz) under unit illumination.

- **Through-focus stacks** ``(N, H, W)`` with ``N ≥ 3`` planes evenly spaced from −dz to +dz (the middle one in
  focus when ``N`` is odd): the outer, symmetric pair is taken (``dz`` is the defocus of the outermost planes).
- **Raw counts** are divided by an image of the empty field (same exposure, sample moved out; one plane or one
  per plane) or by an illumination estimated from the planes themselves (:func:`estimated_illumination`).
  Planes that are neither divided nor near 1 are refused at once, with what to give.
- **Saturation**: pixels at the camera's ceiling are counted and reported (they carry no phase information).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PreparedPlanes",
    "prepare_brightfield",
    "outer_pair",
    "saturated",
    "estimated_illumination",
    "divided_by",
    "RAW_MEDIAN_RANGE",
    "ESTIMATE",
]

#: Planes divided by the background have a median near 1; outside this range they are taken for raw counts
#: (or display-scaled images) and must be divided first.
RAW_MEDIAN_RANGE = (0.3, 3.0)

#: The value of ``flat_field`` that asks for the illumination to be estimated from the planes.
ESTIMATE = "estimate"

#: A plateau at the image's maximum covering at least this fraction of the pixels is taken for clipping.
PLATEAU_FRACTION = 1e-4


@dataclass(frozen=True)
class PreparedPlanes:
    """The pair the task takes and what was done to get it.

    Attributes
    ----------
    planes
        ``(2, H, W)`` float32 (or ``(T, 2, H, W)``), ordered (−dz, +dz), unit illumination.
    notes
        What was done, in words a user reads (which planes were taken, what it was divided by, saturation).
    saturated
        ``(2, H, W)`` bool (or ``(T, 2, H, W)``): pixels at the camera's ceiling.
    stack
        ``(N, H, W)`` float32: every plane of a through-focus stack under unit illumination (``None`` for a pair),
        evenly spaced from −dz to +dz.
    """

    planes: np.ndarray
    notes: list[str] = field(default_factory=list)
    saturated: np.ndarray | None = None
    stack: np.ndarray | None = None


def outer_pair(stack: np.ndarray) -> np.ndarray:
    """The outermost planes ``(2, H, W)`` of a through-focus stack ``(N, H, W)``, ``N ≥ 2``."""
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise ValueError(f"a through-focus stack is (N, H, W) with N >= 2 planes; got shape {stack.shape}")
    return np.stack([stack[0], stack[-1]])


def saturated(planes: np.ndarray) -> np.ndarray:
    """Pixels at the camera's ceiling: the integer type's maximum, or a plateau at the image's maximum (at least
    :data:`PLATEAU_FRACTION` of the pixels, as a 12-bit camera in a 16-bit file leaves). Same shape, bool."""
    arr = np.asarray(planes)
    if arr.dtype.kind in "ui" and (arr == np.iinfo(arr.dtype).max).any():
        return arr == np.iinfo(arr.dtype).max
    top = arr.max()
    at_top = arr == top
    if at_top.mean() >= PLATEAU_FRACTION and at_top.sum() > 1 and top > np.median(arr):
        return at_top
    return np.zeros(arr.shape, bool)


def estimated_illumination(planes: np.ndarray) -> np.ndarray:
    """A smooth illumination ``(H, W)`` for planes ``(Z, H, W)`` in raw counts: a quadratic surface fitted to
    their mean (a thin sample leaves the mean of symmetric planes near the illumination), refitted twice without
    the pixels that depart from it most (the sample's absorbing or focusing parts)."""
    mean = np.asarray(planes, np.float64).mean(axis=0)
    h, w = mean.shape
    y, x = np.mgrid[0:h, 0:w]
    y, x = (y - h / 2) / h, (x - w / 2) / w
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    values, keep = mean.ravel(), np.ones(mean.size, bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
        fit = basis @ coef
        dev = np.abs(values - fit)
        keep = dev <= np.percentile(dev, 80)
    surface = (basis @ coef).reshape(h, w)
    if surface.min() <= 0:
        raise ValueError(
            "the illumination estimated from the planes is not positive anywhere: give an image of the "
            "empty field instead"
        )
    return surface


def divided_by(planes: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Planes ``(Z, H, W)`` divided by an image of the empty field ``(H, W)`` or ``(Z, H, W)`` (float64)."""
    bg = np.asarray(background, np.float64)
    if bg.ndim == 3 and bg.shape[0] == 1:
        bg = bg[0]
    if bg.shape not in (planes.shape[-2:], planes.shape):
        raise ValueError(
            f"the background image is {bg.shape}; it must be one plane {planes.shape[-2:]} or one per plane "
            f"{planes.shape}, the same camera crop as the planes"
        )
    if not (bg > 0).all():
        raise ValueError(
            "the background image has pixels <= 0: record it with the same exposure, or subtract the "
            "camera offset from both before giving them"
        )
    return np.asarray(planes, np.float64) / bg


def _unit_illumination(planes: np.ndarray, flat_field: np.ndarray | str | None) -> tuple[np.ndarray, list[str]]:
    """``planes`` ``(Z, H, W)`` under unit illumination and what was done."""
    if flat_field is None:
        median = float(np.median(planes))
        lo, hi = RAW_MEDIAN_RANGE
        if not lo <= median <= hi:
            raise ValueError(
                f"the planes have a median of {median:.4g}, not about 1: they look like raw camera counts (or "
                "display-scaled). qpi needs them divided by the illumination: give an image of the empty field "
                "recorded with the same exposure (command line: --flat-field FILE; in napari: the Empty field "
                "layer), or let a smooth illumination be fitted to the planes (--flat-field estimate; in napari: "
                "Empty field > estimate from the planes)"
            )
        return planes.astype(np.float64), []
    if isinstance(flat_field, str):
        if flat_field != ESTIMATE:
            raise ValueError(f"flat field: give an image or {ESTIMATE!r}, not {flat_field!r}")
        return divided_by(planes, estimated_illumination(planes)), [
            "divided by an illumination estimated from the planes (a smooth surface; an image of the empty field "
            "is more accurate)"
        ]
    return divided_by(planes, flat_field), ["divided by the image of the empty field given"]


def prepare_brightfield(image: np.ndarray, flat_field: np.ndarray | str | None = None) -> PreparedPlanes:
    """A camera's brightfield planes as the qpi task's pair (see the module doc).

    Parameters
    ----------
    image
        ``(2, H, W)`` pair (−dz, +dz), ``(N, H, W)`` through-focus stack (``N ≥ 3``, evenly spaced from −dz to
        +dz) or ``(T, 2, H, W)`` pairs; raw counts or divided by the background.
    flat_field
        ``None`` (the planes are already divided by the background), an image of the empty field ``(H, W)`` or
        one per plane, or :data:`ESTIMATE`.

    Returns
    -------
    PreparedPlanes
        The pair(s) under unit illumination, float32, with notes and the saturated pixels.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"the image has data type {arr.dtype}; a numeric image is needed")
    is_stack = arr.ndim == 3 and arr.shape[0] >= 3
    divided, done = _unit_illumination(arr.reshape(-1, *arr.shape[-2:]), flat_field)  # every plane, once
    divided = divided.reshape(arr.shape).astype(np.float32)
    stacked = f"a through-focus stack of {arr.shape[0]} planes: the outer pair (first and last) is used"
    notes = [stacked] if is_stack else []
    clipped = saturated(outer_pair(arr) if is_stack else arr)
    if clipped.any():
        notes.append(
            f"{int(clipped.sum())} pixels ({clipped.mean():.2%}) are saturated: they carry no phase information "
            "and pull the phase near them; lower the exposure"
        )
    planes = outer_pair(divided) if is_stack else divided
    return PreparedPlanes(planes, done + notes, clipped, divided if is_stack else None)
