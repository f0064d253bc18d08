"""Intensity normalisation and conditions, shared by training and prediction.

``sr``: each input image (or plane) is scaled by its own robust percentiles,
``x̃ = (x − p_lo)/(p_hi − p_lo)``; the target is scaled with the *input's*
affine map so that the prediction can be put back into the input's units. The
condition is the normalised input bicubically upsampled to the output grid, and
the network learns the residual ``ỹ − up(x̃)``.

``qpi``: intensities under unit illumination are mapped as ``(I − 1)/s_I`` and
the phase as ``(φ − mean φ)/s_φ`` (phase is defined up to a constant).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Normalization", "default_normalization", "cond_channels", "sr_affine", "sr_condition", "qpi_condition", "qpi_base",
           "qpi_target", "FLAT_EPS"]

FLAT_EPS = 1e-6


@dataclass(frozen=True)
class Normalization:
    """How a model's inputs and targets are scaled (recorded in model files).

    Attributes
    ----------
    task
        ``"sr"`` or ``"qpi"``.
    low_percentile, high_percentile
        ``sr``: percentiles of each input image mapped to 0 and 1.
    intensity_scale
        ``qpi``: ``s_I`` in ``(I − 1)/s_I``.
    phase_scale
        ``qpi``: ``s_φ`` (rad) in ``(φ − mean φ)/s_φ``.
    tie
        ``qpi``: ``(dz_um, wavelength_um, pixel_um, alpha)`` to add the TIE phase
        (divided by ``s_φ``) as a third condition channel, or ``None`` for the two
        intensities only.
    """

    task: str
    low_percentile: float = 1.0
    high_percentile: float = 99.8
    intensity_scale: float = 0.25
    phase_scale: float = 1.0
    tie: tuple[float, float, float, float] | None = None
    tie_residual: bool = False

    def __post_init__(self) -> None:
        if self.tie is not None:
            object.__setattr__(self, "tie", tuple(float(v) for v in self.tie))
            if len(self.tie) != 4 or min(self.tie[:3]) <= 0 or self.tie[3] < 0:
                raise ValueError("tie must be (dz_um, wavelength_um, pixel_um, alpha) with positive values")
        if self.tie_residual and self.tie is None:
            raise ValueError("tie_residual needs the TIE channel (tie)")
        if self.task not in ("sr", "qpi"):
            raise ValueError(f"task must be 'sr' or 'qpi', got {self.task!r}")
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError("need 0 <= low_percentile < high_percentile <= 100")
        if self.intensity_scale <= 0 or self.phase_scale <= 0:
            raise ValueError("scales must be positive")

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return asdict(self)


def default_normalization(task: str, qpi_optics: object | None = None) -> Normalization:
    """The normalisation of new models; ``qpi`` adds the TIE channel for the given optics (default optics)."""
    if task == "sr":
        return Normalization(task="sr")
    from ..physics.tie import DEFAULT_TIE_REGULARIZATION
    from .simulate import QPIOptics

    o = qpi_optics or QPIOptics()
    return Normalization(task="qpi", tie=(o.dz_um, o.wavelength_um, o.pixel_um, DEFAULT_TIE_REGULARIZATION),
                         tie_residual=True)


def cond_channels(norm: Normalization) -> int:
    """Channels of the condition the network receives."""
    return 1 if norm.task == "sr" else (3 if norm.tie is not None else 2)


def sr_affine(image: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """``(offset, scale)`` of one ``sr`` input such that ``(x − offset)/scale`` is in about [0, 1].

    A flat image gets ``scale = 1`` (no division by zero).
    """
    lo, hi = np.percentile(np.asarray(image, dtype=np.float64), [norm.low_percentile, norm.high_percentile])
    scale = float(hi - lo)
    return float(lo), scale if scale > FLAT_EPS * max(1.0, abs(float(hi))) else 1.0


def sr_condition(x_norm: torch.Tensor, gain: int = 2) -> torch.Tensor:
    """Normalised input ``(B, 1, h, w)`` → condition on the output grid ``(B, 1, gain·h, gain·w)`` (bicubic)."""
    return F.interpolate(x_norm, scale_factor=gain, mode="bicubic", align_corners=False)


def qpi_condition(intensities: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Intensities ``(B, 2, H, W)`` under unit illumination → condition ``(B, C, H, W)``.

    Channels ``(I₋ − 1)/s_I`` and ``(I₊ − 1)/s_I``, plus ``TIE(I₋, I₊)/s_φ`` when
    ``norm.tie`` is set (computed on the whole image given).
    """
    x = (intensities - 1.0) / norm.intensity_scale
    if norm.tie is None:
        return x
    from ..physics.tie import tie_phase_torch

    dz, lam, px, alpha = norm.tie
    phase = tie_phase_torch(intensities[:, 0], intensities[:, 1], dz, lam, px, alpha).to(x.dtype)
    return torch.cat([x, phase[:, None] / norm.phase_scale], dim=1)


def qpi_base(cond: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """What the network's output is added to (``qpi``): the TIE channel ``(B, 1, H, W)`` for
    ``tie_residual`` models, zeros otherwise (normalised units)."""
    if norm.tie_residual:
        return cond[:, 2:3]
    return torch.zeros_like(cond[:, :1])


def qpi_target(phase: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Phase ``(B, 1, H, W)`` → ``(φ − mean φ)/s_φ`` per image."""
    return (phase - phase.mean(dim=(-2, -1), keepdim=True)) / norm.phase_scale
