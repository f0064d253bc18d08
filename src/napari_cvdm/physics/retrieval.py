"""Nonlinear phase retrieval: fit ``A·exp(iφ)`` to measured defocused intensities through the Fresnel model.

The TIE linearises the intensity change in the phase and fails where the defocus brings rays to a focus
(caustics, ``|∇²φ| ≳ k/dz``). Here the two-plane (or Z-plane) Fresnel model itself is fitted:

    minimise  Σ_z ‖(|P_z(A·e^{iφ})|² − I_z) / σ‖²_crop  +  μ_φ‖φ − φ₀‖²  +  μ_A‖∇ log A‖²

with L-BFGS (torch, batched, CPU or GPU), started from the TIE phase ``φ₀`` and from ``A² = (I₋ + I₊)/2``.
The pull towards ``φ₀`` only matters where the data say little — the lowest spatial frequencies, whose
intensity signal ``∝ (πλ·dz·|f|²)²`` is buried in the noise — so there the regularised TIE is kept and the fit
corrects the rest (caustics, fine detail, absorption).

Boundaries: a camera sees a crop of a larger field, so light crosses the image borders. The unknowns live on a
field larger than the image by a free *margin* on each side (wider than the Fresnel kernel's reach,
``λ·|dz|/(2·pixel)``); only the measured pixels enter the data term, so the fit may put whatever explains the
borders outside the image. Nothing is assumed periodic or mirrored.

Lengths in µm, phase in rad, intensities under unit illumination (the background is 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .retrieval_fit import (
    CONSISTENCY_OPTIONS,
    STALL_CHECK,
    STALL_DROP,
    RetrievalOptions,
    Retrieved,
    fit_field,
    misfit_stalled,
    model_planes,
    phase_preconditioner,
)
from .tie import tie_phase_torch

__all__ = [
    "RetrievalOptions",
    "Retrieved",
    "fresnel_margin",
    "retrieve_phase",
    "fit_margins",
    "model_planes",
    "phase_preconditioner",
    "misfit_stalled",
    "STALL_CHECK",
    "STALL_DROP",
]


def fresnel_margin(dz_um: Sequence[float], wavelength_um: float, pixel_um: float) -> int:
    """Free border (pixels) wide enough for light from outside the image to reach it: twice the reach
    ``λ·max|dz|/(2·pixel)`` of the Fresnel kernel at the sampling limit, plus 4 pixels."""
    reach = wavelength_um * max(abs(float(d)) for d in dz_um) / (2 * pixel_um**2)
    return int(math.ceil(2 * reach)) + 4


def _check_planes(planes: torch.Tensor, dz_um: Sequence[float], noise: float) -> None:
    if planes.ndim != 4 or planes.shape[1] != len(dz_um):
        raise ValueError(f"need planes (B, Z, H, W) with Z = {len(dz_um)} (one per dz); got {tuple(planes.shape)}")
    if noise <= 0:
        raise ValueError("the noise σ must be positive (unit illumination = 1)")
    if not torch.isfinite(planes).all():
        raise ValueError("the planes contain NaN or infinite values")


def _pad(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``(B, H, W)`` → ``(B, H + 2m, W + 2m)``, reflected (a starting value only; the fit changes the margin)."""
    if margin == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if margin < min(h, w) else "replicate"
    return F.pad(x[:, None], (margin, margin, margin, margin), mode=mode)[:, 0]


def _start_amplitude(planes: torch.Tensor, fit: bool) -> torch.Tensor:
    if not fit:
        return torch.zeros_like(planes[:, 0])
    mean = planes.mean(dim=1).clamp(min=1e-3)
    return 0.5 * torch.log(mean)


def _padded_start(
    planes: torch.Tensor,
    phase: torch.Tensor,
    dz_um: Sequence[float],
    wavelength_um: float,
    pixel_um: float,
    options: RetrievalOptions,
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The margin (pixels) and the starting phase and log-amplitude on the padded field."""
    margin = fresnel_margin(dz_um, wavelength_um, pixel_um) if options.margin_px is None else options.margin_px
    log_amp = _start_amplitude(planes.float(), options.fit_amplitude)
    return margin, _pad(phase.float(), margin), _pad(log_amp, margin)


def retrieve_phase(
    planes: torch.Tensor,
    dz_um: Sequence[float],
    wavelength_um: float,
    pixel_um: float,
    noise: float,
    options: RetrievalOptions | None = None,
    start_phase: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> Retrieved:
    """Phase (and amplitude) that explain defocused intensities through the Fresnel model.

    Parameters
    ----------
    planes
        ``(B, Z, H, W)`` intensities under unit illumination at the distances ``dz_um`` (µm, positive along
        the light).
    dz_um
        One defocus per plane, e.g. ``(−1, +1)``.
    wavelength_um, pixel_um
        Illumination wavelength and pixel size at the sample, µm.
    noise
        Noise σ of the intensities (unit illumination = 1): the unit of the residual.
    options
        Iterations, regularisation, amplitude, margin.
    start_phase
        ``(B, H, W)`` starting phase; default: the TIE of the first and last planes.
    valid
        ``(B, Z, H, W)`` or ``(Z, H, W)`` bool: the pixels that carry data (``None``: all). Saturated pixels
        say nothing of the phase; left out, they neither pull the fit nor count in its residual.

    Returns
    -------
    Retrieved
        Phase ``(B, H, W)`` (zero mean), amplitude and residual ``(B, Z, H, W)`` in noise units.

    Notes
    -----
    The images of a batch share one L-BFGS run (one line search for their summed objective), so a batch does not
    give exactly what each image gives alone. The defaults were chosen one image at a time, which is how the task,
    ``evaluate`` and the widget call it.
    """
    options = options or RetrievalOptions()
    _check_planes(planes, dz_um, noise)
    if start_phase is None:
        order = sorted(range(len(dz_um)), key=lambda i: float(dz_um[i]))
        lo, hi = order[0], order[-1]
        spread = (float(dz_um[hi]) - float(dz_um[lo])) / 2
        if spread <= 0:
            raise ValueError("the TIE start needs two different defocus distances (or give start_phase)")
        start_phase = tie_phase_torch(
            planes[:, lo], planes[:, hi], spread, wavelength_um, pixel_um, options.tie_regularization
        )
    margin, phase0, log_amp0 = _padded_start(planes, start_phase, dz_um, wavelength_um, pixel_um, options)
    free = torch.ones(phase0.shape[-2:], dtype=torch.bool)
    return fit_field(planes, phase0, log_amp0, free, dz_um, wavelength_um, pixel_um, noise, options, margin, valid)


def fit_margins(
    planes: torch.Tensor,
    phase: torch.Tensor,
    dz_um: Sequence[float],
    wavelength_um: float,
    pixel_um: float,
    noise: float,
    options: RetrievalOptions | None = None,
) -> Retrieved:
    """How well a *given* phase explains the planes: the phase inside the image stays fixed, only what the
    image cannot show (the field outside it, and the amplitude) is fitted; the residual is the consistency
    check of a reconstruction.

    Parameters
    ----------
    planes
        ``(B, Z, H, W)`` measured intensities (unit illumination).
    phase
        ``(B, H, W)`` the reconstruction to check (rad).

    Returns
    -------
    Retrieved
        The same phase, the fitted amplitude and the residual ``(B, Z, H, W)`` in noise units.
    """
    options = options or CONSISTENCY_OPTIONS
    _check_planes(planes, dz_um, noise)
    if phase.shape != planes[:, 0].shape:
        raise ValueError(f"phase {tuple(phase.shape)} does not match the planes {tuple(planes.shape)}")
    margin, phase0, log_amp0 = _padded_start(planes, phase, dz_um, wavelength_um, pixel_um, options)
    free = torch.ones(phase0.shape[-2:], dtype=torch.bool)
    free[margin : margin + phase.shape[-2], margin : margin + phase.shape[-1]] = False
    return fit_field(planes, phase0, log_amp0, free, dz_um, wavelength_um, pixel_um, noise, options, margin)
