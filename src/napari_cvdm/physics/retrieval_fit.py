"""The fit behind :mod:`napari_cvdm.physics.retrieval`: its options, the Fresnel model of the planes, the
preconditioned L-BFGS run that stops when the misfit stalls, and what it returns.

Lengths in µm, phase in rad, intensities under unit illumination (the background is 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .fresnel import frequency_grid, fresnel_transfer

__all__ = [
    "CONSISTENCY_OPTIONS",
    "RetrievalOptions",
    "Retrieved",
    "STALL_CHECK",
    "STALL_DROP",
    "fit_field",
    "misfit_stalled",
    "model_planes",
    "phase_preconditioner",
]

#: Iterations between two checks of whether a fit has stalled (:attr:`RetrievalOptions.stall_window`).
STALL_CHECK = 10
#: A fit has stalled when its window lowered the residual's RMS by less than this fraction. Chosen on the traces
#: of 36 validation pairs (128², cells, textures, photos; σ 0.005–0.02) among 0.2–2 %: 0.8 % gave 28.19 dB against
#: 26.93 dB for a fixed 100 iterations. (A threshold at the misfit's own statistical noise, √(2N) noise variances,
#: is the same on 128² pairs but twice as strict on 256² ones, where it let the lowest modes of a dense-cells pair
#: drift for 70 more iterations: SSIM 0.56 → 0.46.)
STALL_DROP = 0.008


@dataclass(frozen=True)
class RetrievalOptions:
    """How the nonlinear fit runs. The defaults were chosen per image on 18 validation pairs (cells, textures,
    photos; σ 0.005–0.02; pure and absorbing): a smooth amplitude (``μ_A = 10⁵``) keeps the fit from explaining
    noise with absorption (+4 dB over ``μ_A = 10⁻²``).

    Parameters
    ----------
    iterations
        L-BFGS iterations at most (each evaluates the model once or a few times).
    stall_window
        Stop once the last ``stall_window`` iterations lowered the residual's RMS by less than
        :data:`STALL_DROP` (:func:`misfit_stalled`), checked every :data:`STALL_CHECK` iterations: past that point
        the fit no longer explains the data measurably better, it moves the lowest modes the data barely constrain
        (docs/physics.md, "A stopping rule"). ``None``: one L-BFGS run of at most ``iterations``, which ends early
        once its line search finds no lower value (an early stop of its own, often after a few tens of iterations).
    stall_start
        No stall is judged before this many iterations: at first the fit may lower its regularisers (smoothing the
        amplitude of a rough start) while the misfit stays flat, which is not a stall.
    start_weight
        ``μ_φ``: weight of ``‖φ − φ₀‖²`` (per pixel, in units of the data term's ``1/σ²``).
    tie_regularization
        ``α`` (µm⁻²) of the TIE start ``φ₀``.
    amplitude_smoothness
        ``μ_A``: weight of ``‖∇ log A‖²``.
    fit_amplitude
        Fit the amplitude ``A`` (absorption) beside the phase; otherwise ``A = 1`` (pure phase object).
    margin_px
        Free border around the image (pixels); ``None`` takes :func:`fresnel_margin`.
    """

    iterations: int = 400
    start_weight: float = 0.003
    tie_regularization: float = 0.1
    amplitude_smoothness: float = 1e5
    fit_amplitude: bool = True
    margin_px: int | None = None
    stall_window: int | None = 20
    stall_start: int = 30

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError("retrieval needs at least one iteration")
        if self.stall_window is not None and self.stall_window < STALL_CHECK:
            raise ValueError(f"the stall window must be at least {STALL_CHECK} iterations (or None)")
        if self.start_weight < 0 or self.tie_regularization < 0 or self.amplitude_smoothness < 0:
            raise ValueError("regularisation weights must be >= 0")
        if self.stall_start < 0:
            raise ValueError("the stall start must be >= 0 iterations")
        if self.margin_px is not None and self.margin_px < 0:
            raise ValueError("the margin must be >= 0 pixels")


#: For checking a given phase: an amplitude free enough to follow real absorption (μ_A = 10³).
CONSISTENCY_OPTIONS = RetrievalOptions(iterations=60, amplitude_smoothness=1e3, stall_window=None)


@dataclass
class Retrieved:
    """Result of a fit, one entry per image of the batch.

    Attributes
    ----------
    phase
        ``(B, H, W)`` phase (rad), zero mean over the image.
    amplitude
        ``(B, H, W)`` amplitude ``A`` (1 = no absorption).
    residual
        ``(B, Z, H, W)`` model minus measurement, in units of the noise σ.
    iterations
        L-BFGS iterations run (fewer than asked when the fit stalled, or when L-BFGS could lower its objective no
        further).
    """

    phase: torch.Tensor
    amplitude: torch.Tensor
    residual: torch.Tensor
    iterations: int = 0


def _transfers(
    shape: tuple[int, int], dz_um: Sequence[float], wavelength_um: float, pixel_um: float, device: torch.device
) -> torch.Tensor:
    """The Fresnel transfer functions of the planes, ``(Z, H, W)`` complex64."""
    planes = [fresnel_transfer(shape, float(d), wavelength_um, pixel_um, device) for d in dz_um]
    return torch.stack(planes).to(torch.complex64)


def phase_preconditioner(
    shape: tuple[int, int],
    dz_um: Sequence[float],
    wavelength_um: float,
    pixel_um: float,
    device: torch.device,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Fourier filter ``(H, W)`` that makes the fit well conditioned at low frequencies.

    Around a uniform field the data term's curvature for a phase mode at a low frequency ``f`` is
    ``c(f) = Σ_z 4·(πλ·dz_z·|f|²)²`` (the TIE's response) — about 10⁻⁵ of the largest for the lowest modes of a
    30 µm field. Fitting ``φ = IFFT(P·FFT(u))`` with ``P = 1/√(min(c, c₁) + ε·c₁)`` (``c₁`` = the curvature
    where ``πλ·dz·|f|² = 1``, ``ε = floor``) gives all modes a comparable curvature; the mean stays fixed.
    """
    f2 = frequency_grid(shape, pixel_um, device)
    curv = sum(4 * (math.pi * wavelength_um * float(dz) * f2) ** 2 for dz in dz_um)
    cap = float(sum(4.0 for dz in dz_um if float(dz) != 0.0)) or 1.0
    p = 1 / torch.sqrt(torch.clamp(curv, max=cap) + floor * cap)
    p[0, 0] = 0.0
    return (p / p[p > 0].min()).float()


def model_planes(phase: torch.Tensor, log_amplitude: torch.Tensor, transfers: torch.Tensor) -> torch.Tensor:
    """Intensities ``(B, Z, H, W)`` of ``exp(log A + iφ)`` (both ``(B, H, W)``) through ``(Z, H, W)`` transfers."""
    field = torch.polar(torch.exp(log_amplitude), phase)
    return torch.fft.ifft2(torch.fft.fft2(field)[:, None] * transfers).abs() ** 2


def misfit_stalled(before: float, now: float) -> bool:
    """Whether a fit's data misfit (sums of squared residuals, any one unit) fell from ``before`` to ``now`` by
    less than :data:`STALL_DROP` of its RMS."""
    if before <= 0:
        return True
    return math.sqrt(max(now, 0.0) / before) > 1.0 - STALL_DROP


def _grad_energy(x: torch.Tensor) -> torch.Tensor:
    return (x.diff(dim=-1) ** 2).sum() + (x.diff(dim=-2) ** 2).sum()


def _iterate(
    opt: torch.optim.LBFGS, closure: Callable[[], torch.Tensor], misfit: Callable[[], float], options: RetrievalOptions
) -> int:
    """Run ``opt`` for ``options.iterations`` at most, in chunks of :data:`STALL_CHECK` when the options have a stall
    window, stopping once the ``misfit`` stalls (:func:`misfit_stalled`); returns the iterations L-BFGS ran. Without a
    stall window that can be fewer than asked: one L-BFGS run ends early once an iteration no longer changes the
    objective or its step (the line search finds no lower value)."""
    chunk = options.iterations if options.stall_window is None else min(STALL_CHECK, options.iterations)
    done, history = 0, [misfit()] if options.stall_window is not None else []
    lag = (options.stall_window or 0) // STALL_CHECK
    with torch.enable_grad():
        while done < options.iterations:
            opt.param_groups[0]["max_iter"] = min(chunk, options.iterations - done)
            opt.step(closure)  # L-BFGS keeps its history between steps: the chunks are one run
            done += opt.param_groups[0]["max_iter"]
            if options.stall_window is None:
                continue
            history.append(misfit())
            judged = done >= options.stall_start and len(history) > lag
            if judged and misfit_stalled(history[-1 - lag], history[-1]):
                break
    return int(opt.state[opt.param_groups[0]["params"][0]].get("n_iter", done))


def fit_field(
    planes: torch.Tensor,
    phase0: torch.Tensor,
    log_amp0: torch.Tensor,
    free_phase: torch.Tensor,
    dz_um: Sequence[float],
    wavelength_um: float,
    pixel_um: float,
    noise: float,
    options: RetrievalOptions,
    margin: int,
    valid: torch.Tensor | None = None,
) -> Retrieved:
    """L-BFGS on the padded field; ``free_phase`` ``(He, We)`` marks the phase pixels the fit may change, ``valid``
    (like ``planes``) the measured pixels that carry data (``None``: all; the others get a zero residual)."""
    b, _, h, w = planes.shape
    meas = planes.float()
    transfers = _transfers(tuple(phase0.shape[-2:]), dz_um, wavelength_um, pixel_um, planes.device)
    fixed = phase0.float().detach()
    free = free_phase.to(planes.device)
    precond = phase_preconditioner(tuple(fixed.shape[-2:]), dz_um, wavelength_um, pixel_um, planes.device)
    u = torch.zeros_like(fixed, requires_grad=True)
    log_amp = log_amp0.float().clone().requires_grad_(options.fit_amplitude)
    params = [u, log_amp] if options.fit_amplitude else [u]
    weight = torch.ones_like(meas) if valid is None else valid.to(meas).expand_as(meas)
    n_data = float(weight.sum())
    inner = (slice(None), slice(None), slice(margin, margin + h), slice(margin, margin + w))

    def current_phase() -> torch.Tensor:
        return fixed + torch.fft.ifft2(torch.fft.fft2(u) * precond).real * free

    def objective() -> torch.Tensor:
        phase = current_phase()
        pred = model_planes(phase, log_amp, transfers)
        data = ((pred[inner] - meas) ** 2 * weight).sum() / (noise**2 * n_data)
        reg = options.start_weight * ((phase - fixed) ** 2).sum() + options.amplitude_smoothness * _grad_energy(log_amp)
        return data + reg / (b * h * w)

    opt = torch.optim.LBFGS(
        params, lr=1.0, history_size=20, tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    def misfit() -> float:
        with torch.no_grad():
            return float(((model_planes(current_phase(), log_amp, transfers)[inner] - meas) ** 2 * weight).sum())

    done = _iterate(opt, closure, misfit, options)
    with torch.no_grad():
        phase = current_phase()
        residual = (model_planes(phase, log_amp, transfers)[inner] - meas) * weight / noise
        crop_phase = phase[:, margin : margin + h, margin : margin + w]
        crop_phase = crop_phase - crop_phase.mean(dim=(-2, -1), keepdim=True)
        amp = torch.exp(log_amp[:, margin : margin + h, margin : margin + w])
    return Retrieved(crop_phase, amp, residual, done)
