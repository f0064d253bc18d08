"""What a task hands back besides its values: a plane prepared for the network (:class:`Conditioned`), a
reconstruction pushed back through the forward model (:class:`Consistency`), and the notes a method makes about one
result (:class:`MethodNote`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "CheckedImage",
    "pixel_yx",
    "Conditioned",
    "Consistency",
    "MethodNote",
    "run_noting",
    "interior_rms",
    "RESIDUAL_LIMIT",
]


#: A reconstruction whose residual RMS exceeds this many noise units does not explain its input.
RESIDUAL_LIMIT = 1.5


_Arg = TypeVar("_Arg")


_Out = TypeVar("_Out")


class MethodNote(UserWarning):
    """What a :data:`Method` says about one result (e.g. that a prior could not be used): issued as this warning
    category, it becomes one of the result's warnings when the method runs as a classical method."""


def run_noting(fn: Callable[[_Arg], _Out], x: _Arg, notes: list[str]) -> _Out:
    """``fn(x)`` (a :data:`Method` on one input, or a whole evaluation) with its :class:`MethodNote` warnings
    appended to ``notes`` instead of issued (other warnings pass through)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MethodNote)
        out = fn(x)
    for w in caught:
        if issubclass(w.category, MethodNote):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def pixel_yx(pixel_um: Sequence[float] | None) -> tuple[float, float] | None:
    """A stated pixel size as ``(y, x)`` in µm (one value: square pixels), or ``None`` when unknown."""
    return None if pixel_um is None else (float(pixel_um[0]), float(pixel_um[-1]))


def times_off(value: float, own: float) -> float:
    """How many times ``value`` is off ``own`` (≥ 1; 1 where either is not positive: nothing to compare)."""
    return max(value, own) / min(value, own) if value > 0 and own > 0 else 1.0


def outer_defocus(n_planes: int, spacing_um: float | None) -> float | None:
    """The defocus ``dz`` (µm) of the outer planes of ``n_planes`` evenly spaced from −dz to +dz, ``spacing_um``
    apart (a pair: half the spacing), or ``None`` when the spacing is unknown or not positive."""
    if spacing_um is None or not spacing_um > 0 or n_planes < 2:
        return None
    return float(spacing_um) * (n_planes - 1) / 2


@dataclass(frozen=True)
class CheckedImage:
    """An input checked by its task once (:meth:`~napari_cvdm.tasks.base.Task.checked`), as every step of a
    reconstruction takes it: the planes are never checked or copied again on the way to the sampler.

    Attributes
    ----------
    planes
        ``(P, H, W)`` (sr) or ``(P, 2, H, W)`` (qpi) float64, the task's own copy (no step writes to it; it is
        not flagged read-only because torch warns about every such array it is given).
    single
        Whether the input was one plane (results then have no plane axis).
    pixel_um
        The input's pixel size (y, x) in µm where its file or layer states it, else ``None``: checked against the
        optics of whatever reconstructs it.
    dz_um
        Brightfield planes: their defocus ±dz (µm) where the file or layer states their spacing
        (:func:`outer_defocus`), else ``None``; checked like the pixel size.
    """

    planes: np.ndarray
    single: bool
    pixel_um: tuple[float, float] | None = None
    dz_um: float | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape the input was given in (no plane axis for one plane)."""
        return self.planes.shape[1:] if self.single else self.planes.shape

    def as_given(self) -> np.ndarray:
        """The planes in the shape the input was given in (a view)."""
        return self.planes[0] if self.single else self.planes

    def with_planes(self, planes: np.ndarray) -> CheckedImage:
        """The same input made into other planes ``(P, ...)`` by a step that keeps it valid (e.g. resampled)."""
        return CheckedImage(np.asarray(planes, np.float64), self.single, self.pixel_um, self.dz_um)


@dataclass
class Conditioned:
    """One input plane prepared for the network.

    Attributes
    ----------
    cond
        ``(1, C, H', W')`` condition on the output grid (normalised units).
    to_values
        Maps network samples ``(N, 1, H', W')`` (normalised, relative to the task's base) to values in
        physical units ``(N, H', W')``.
    warnings
        Plain-text remarks about this input (e.g. a flat image).
    """

    cond: torch.Tensor
    to_values: Callable[[torch.Tensor], torch.Tensor]
    warnings: list[str] = field(default_factory=list)


def interior_rms(residual: np.ndarray, border: int = 4) -> float:
    """RMS of a residual ``(..., H, W)`` without ``border`` pixels at the edges (the forward models guess what
    lies beyond the image there)."""
    r = np.asarray(residual, np.float64)
    h, w = r.shape[-2:]
    if h > 4 * border and w > 4 * border:
        r = r[..., border : h - border, border : w - border]
    return float(np.sqrt(np.mean(r**2)))


@dataclass
class Consistency:
    """A reconstruction pushed back through the forward model and compared with its input.

    Attributes
    ----------
    residual
        Model minus measurement in units of the noise, on the input grid (``sr`` ``(H, W)``, ``qpi``
        ``(2, H, W)``).
    rms
        Root mean square of ``residual`` (≈ 1 when the reconstruction explains the input down to the noise).
    reference_rms
        The same for the physics estimate (``qpi``: the nonlinear retrieval), or ``None``.
    noise
        The noise σ the residual is measured in (estimated from the input; input units).
    warnings
        Plain-text warnings (the result does not explain the data, leaves the trained range, ...).
    """

    residual: np.ndarray
    rms: float
    reference_rms: float | None
    noise: float
    warnings: list[str] = field(default_factory=list)
