"""CVDM training loss, with its terms returned separately for logging.

Per example (means over pixels):

``L = ‖ε − ε̂‖² + 2·L_β + 2·KL(q(z_1|y) ‖ N(0, I)) + 2·α·(∂²γ/∂t²)²``

with ``L_β = (∂γ/∂t + β·γ)² + (γ(0) − 1)² + γ(1)²`` and ``α = 1e-3``
(della Maggiora et al., ICLR 2024). The fixed-schedule baseline
(:func:`ddpm_loss`) keeps only the noise term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import CVDMNetwork
from .schedule import CosineSchedule, GammaDerivatives, LearnedSchedule, gamma_derivatives

__all__ = ["LossTerms", "beta_terms", "cvdm_loss", "ddpm_loss", "training_loss", "stratified_times", "DEFAULT_ALPHA"]

DEFAULT_ALPHA = 1e-3


@dataclass
class LossTerms:
    """Loss terms per example, each of shape ``(B,)``.

    ``total = noise + 2·beta + 2·prior + 2·alpha·curvature``.
    """

    total: torch.Tensor
    noise: torch.Tensor
    beta: torch.Tensor
    prior: torch.Tensor
    curvature: torch.Tensor

    def means(self) -> dict[str, float]:
        """Batch means as plain floats (for logs)."""
        return {k: float(getattr(self, k).detach().mean()) for k in ("total", "noise", "beta", "prior", "curvature")}


def stratified_times(
    batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Low-discrepancy times ``t_i = (u + i/B) mod 1`` (one uniform draw ``u``), shape ``(B,)``."""
    u = torch.rand((), generator=generator, device=device)
    return torch.remainder(u + torch.arange(batch, device=device) / batch, 1.0)


def _pixel_mean(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).mean(dim=1)


def _noise_term(
    net: CVDMNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    gamma: torch.Tensor,
    one_minus_gamma: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    eps = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    z = gamma.sqrt() * y + one_minus_gamma.clamp_min(1e-12).sqrt() * eps
    eps_hat = net.denoiser(z, x, gamma)
    return _pixel_mean((eps - eps_hat) ** 2)


def beta_terms(
    schedule: LearnedSchedule, lam: torch.Tensor, t: torch.Tensor, g: GammaDerivatives
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of ``L_β``, each ``(B,)``.

    Returns
    -------
    residual
        ``mean((∂γ/∂t + β·γ)²)`` with ``β = λ(x)·τ_β(t)``: zero exactly when
        ``β = −(∂γ/∂t)/γ``, i.e. when ``τ_β = dτ_γ/dt``.
    boundary
        ``mean((γ(0) − 1)²) + mean(γ(1)²)``.
    """
    beta = lam * schedule.tau_b(t).reshape(-1, 1, 1, 1)
    residual = _pixel_mean((g.dgamma + beta * g.gamma) ** 2)
    tau_ends = schedule.tau(torch.tensor([0.0, 1.0], device=lam.device, dtype=lam.dtype))
    gamma0 = torch.exp(-lam * tau_ends[0])
    gamma1 = torch.exp(-lam * tau_ends[1])
    boundary = _pixel_mean((gamma0 - 1.0) ** 2) + _pixel_mean(gamma1**2)
    return residual, boundary


def cvdm_loss(
    net: CVDMNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> LossTerms:
    """The CVDM loss for a batch.

    Parameters
    ----------
    net
        Network with a :class:`LearnedSchedule`.
    x
        Condition ``(B, C_x, H, W)`` on the output grid.
    y
        Target ``(B, C_y, H, W)`` (normalised; for ``sr`` the residual).
    t
        Times ``(B,)``; stratified uniform draws when ``None``.
    generator
        Random generator for ``t`` and ``ε``.
    alpha
        Weight of the curvature regulariser.
    """
    schedule = net.schedule
    if not isinstance(schedule, LearnedSchedule):
        raise TypeError("cvdm_loss needs a learned schedule; use ddpm_loss for the cosine baseline")
    if t is None:
        t = stratified_times(y.shape[0], generator, y.device)
    lam = schedule.lam(x)
    g = gamma_derivatives(lam, schedule.tau_gamma, t)
    noise = _noise_term(net, x, y, g.gamma, g.one_minus_gamma, generator)

    residual, boundary = beta_terms(schedule, lam, t, g)
    l_beta = residual + boundary
    a1 = lam * schedule.tau(torch.ones(1, device=y.device, dtype=y.dtype))
    gamma1 = torch.exp(-a1)
    # KL(N(√γ1·y, 1−γ1) ‖ N(0, 1)) per pixel, with log(1−γ1) computed stably
    log_var1 = torch.log((-torch.expm1(-a1)).clamp_min(1e-12))
    kl = 0.5 * (gamma1 * (y**2 - 1.0) - log_var1)
    prior = _pixel_mean(kl.expand_as(y))
    curvature = _pixel_mean(g.d2gamma**2)
    total = noise + 2.0 * l_beta + 2.0 * prior + 2.0 * alpha * curvature
    return LossTerms(total=total, noise=noise, beta=l_beta, prior=prior, curvature=curvature)


def ddpm_loss(
    net: CVDMNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LossTerms:
    """Noise-prediction loss of the fixed cosine schedule (the ablation baseline).

    Shapes as in :func:`cvdm_loss`; the schedule terms are zero.
    """
    schedule = net.schedule
    if not isinstance(schedule, CosineSchedule):
        raise TypeError("ddpm_loss is for the cosine baseline; use cvdm_loss for a learned schedule")
    if t is None:
        t = stratified_times(y.shape[0], generator, y.device)
    lam = schedule.lam(x)
    tau = schedule.tau(t)
    a = lam * tau.reshape(-1, 1, 1, 1)
    noise = _noise_term(net, x, y, torch.exp(-a), -torch.expm1(-a), generator)
    zero = torch.zeros_like(noise)
    return LossTerms(total=noise, noise=noise, beta=zero, prior=zero, curvature=zero)


def training_loss(
    net: CVDMNetwork, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
) -> LossTerms:
    """The loss that matches the network's schedule (CVDM or cosine baseline)."""
    if isinstance(net.schedule, LearnedSchedule):
        return cvdm_loss(net, x, y, generator=generator)
    return ddpm_loss(net, x, y, generator=generator)
