"""Noise schedules of the form ``γ(t, x) = exp(−λ(x)·τ(t))``.

CVDM learns the schedule (della Maggiora et al., ICLR 2024):

* ``λ(x) = softplus(U_φ(x)) > 0`` is a per-pixel map given by a small U-Net of
  the condition ``x``;
* ``τ_γ(t)`` and ``τ_β(t)`` are monotone networks of the **scalar** time
  ``t ∈ [0, 1]`` (non-negative weights), evaluated once per time value and
  broadcast over pixels;
* ``γ(t, x) = exp(−λ(x)·τ_γ(t))`` is the signal fraction
  (``z_t = √γ·y + √(1−γ)·ε``) and ``β(t, x) = λ(x)·τ_β(t)``.

Because ``λ > 0`` and ``τ_γ`` is strictly increasing, γ is strictly decreasing
in ``t`` at every pixel. The fixed cosine schedule of the ablation baseline has
the same form with ``λ ≡ 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .denoiser import UNet, UNetConfig

__all__ = [
    "ScheduleConfig",
    "MonotoneTimeNet",
    "LearnedSchedule",
    "CosineSchedule",
    "gamma_map",
    "tau_derivatives",
    "GammaDerivatives",
    "gamma_derivatives",
]

_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (from autocast) go back to float32; float32/float64 stay."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


@dataclass(frozen=True)
class ScheduleConfig:
    """Architecture of the learned schedule.

    Parameters
    ----------
    base_channels, channel_mults
        Size of the λ U-Net (no attention, no modulation).
    hidden
        Width of the monotone time networks.
    tau_end
        Initial ``τ_γ(1)``: with ``λ = 1`` at initialisation, ``γ(1) = exp(−tau_end)``.
    space_to_depth
        Pixel-unshuffle factor of the λ U-Net (1: it runs on the output grid; 2: on a grid twice as coarse with
        4× the input channels, 4× cheaper). Files that predate it are 1.
    """

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2)
    hidden: int = 128
    tau_end: float = 8.0
    space_to_depth: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        if self.hidden < 1 or self.tau_end <= 0:
            raise ValueError("ScheduleConfig needs hidden >= 1 and tau_end > 0")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")

    def to_dict(self) -> dict:
        """JSON-serialisable form (for model-file metadata)."""
        return asdict(self)


class PositiveLinear(nn.Module):
    """Linear layer whose weights are ``softplus(raw) > 0`` (monotone increasing)."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True, init_weight: float | None = None) -> None:
        super().__init__()
        raw = torch.randn(n_out, n_in) * 0.5 + (_inv_softplus(init_weight) if init_weight else 0.0)
        self.raw_weight = nn.Parameter(raw)
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, F.softplus(self.raw_weight), self.bias)


class MonotoneTimeNet(nn.Module):
    """A strictly increasing scalar function ``τ(t)`` (as in Kingma et al., 2021).

    ``τ(t) = a·t + b + Σ_k w_k·sigmoid(c_k·(a·t + b) + d_k) + offset`` with
    ``a, c_k, w_k > 0``. Acts on a vector of time values ``(T,)`` and returns
    ``(T,)`` — never on image-sized maps.
    """

    def __init__(self, hidden: int = 128, slope: float = 8.0, start: float = 0.0) -> None:
        super().__init__()
        self.l1 = PositiveLinear(1, 1)
        self.l2 = PositiveLinear(1, hidden)
        self.l3 = PositiveLinear(hidden, 1, bias=False)
        self.offset = nn.Parameter(torch.zeros(()))
        with torch.no_grad():
            self.l1.raw_weight.fill_(_inv_softplus(slope))
            self.l2.raw_weight.copy_(_inv_softplus(1.0) + 0.5 * torch.randn(hidden, 1))
            self.l2.bias.copy_(torch.linspace(-slope, 0.0, hidden))
            self.l3.raw_weight.fill_(-6.0)  # tiny non-linear part at first
            self.offset.fill_(start - float(self._raw(torch.zeros(1))[0]))

    def _raw(self, t: torch.Tensor) -> torch.Tensor:
        h = self.l1(t[:, None])
        return (h + self.l3(torch.sigmoid(self.l2(h))))[:, 0]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self._raw(t) + self.offset


class LearnedSchedule(nn.Module):
    """CVDM's learned, per-pixel, input-conditioned schedule.

    Parameters
    ----------
    cond_channels
        Channels of the condition ``x``.
    config
        Architecture (defaults to :class:`ScheduleConfig`).
    """

    def __init__(self, cond_channels: int, config: ScheduleConfig | None = None) -> None:
        super().__init__()
        cfg = config or ScheduleConfig()
        self.config = cfg
        self.lambda_net = UNet(
            UNetConfig(
                in_channels=cond_channels,
                out_channels=1,
                base_channels=cfg.base_channels,
                channel_mults=cfg.channel_mults,
                num_res_blocks=1,
                attention_levels=(),
                embed_channels=0,
                space_to_depth=cfg.space_to_depth,
            )
        )
        with torch.no_grad():
            self.lambda_net.conv_out.bias.fill_(_SOFTPLUS_ONE)  # λ = 1 everywhere at first
        self.tau_gamma = MonotoneTimeNet(cfg.hidden, slope=cfg.tau_end, start=0.0)
        # τ_β ≈ dτ_γ/dt = tau_end at first; softplus keeps it non-negative
        self.tau_beta = MonotoneTimeNet(cfg.hidden, slope=0.1, start=_inv_softplus(cfg.tau_end))

    @property
    def stride(self) -> int:
        """Image sides must be multiples of this."""
        return self.lambda_net.config.stride

    def lam(self, x: torch.Tensor) -> torch.Tensor:
        """``λ(x)``: ``(B, C, H, W)`` condition → ``(B, 1, H, W)`` positive map (always float32)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.softplus(self.lambda_net(_full_precision(x)))

    def tau(self, t: torch.Tensor) -> torch.Tensor:
        """``τ_γ(t)``: ``(T,)`` → ``(T,)``, strictly increasing (float32 even under autocast)."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            return self.tau_gamma(t)

    def tau_b(self, t: torch.Tensor) -> torch.Tensor:
        """``τ_β(t) ≥ 0``: ``(T,)`` → ``(T,)``; ``β(t, x) = λ(x)·τ_β(t)``."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            return F.softplus(self.tau_beta(t))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``γ(t, x)`` for a batch: ``x`` ``(B, C, H, W)``, ``t`` ``(B,)`` → ``(B, 1, H, W)``."""
        return gamma_map(self.lam(x), self.tau(t))


class CosineSchedule(nn.Module):
    """Fixed cosine schedule (Nichol & Dhariwal, 2021), spatially constant.

    ``γ(t) = cos²(π/2·(t+s)/(1+s)) / cos²(π/2·s/(1+s))``, written as
    ``exp(−λ·τ(t))`` with ``λ ≡ 1`` so that it plugs into the same sampler.
    ``γ`` is clamped to ``[gamma_min, 1]``.
    """

    def __init__(self, s: float = 0.008, gamma_min: float = 1e-5) -> None:
        super().__init__()
        self.s = s
        self.gamma_min = gamma_min

    stride = 1

    def lam(self, x: torch.Tensor) -> torch.Tensor:
        """``λ ≡ 1``: ``(B, C, H, W)`` → ``(B, 1, H, W)``."""
        return torch.ones_like(x[:, :1])

    def tau(self, t: torch.Tensor) -> torch.Tensor:
        """``τ(t) = −log γ_cos(t)``: ``(T,)`` → ``(T,)``."""
        s = self.s
        g = torch.cos(0.5 * math.pi * (t + s) / (1 + s)) ** 2 / math.cos(0.5 * math.pi * s / (1 + s)) ** 2
        return -torch.log(g.clamp(self.gamma_min, 1.0))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``γ(t)`` broadcast to ``(B, 1, H, W)``."""
        return gamma_map(self.lam(x), self.tau(t))


def gamma_map(lam: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``γ = exp(−λ·τ)``.

    Parameters
    ----------
    lam
        ``(B, 1, H, W)`` (or broadcastable) per-pixel rate.
    tau
        ``(B,)`` time-function values, one per batch element, or a 0-d tensor.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` signal fraction.
    """
    return torch.exp(-lam * tau.reshape(-1, 1, 1, 1))


def tau_derivatives(net: nn.Module, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``τ(t)``, ``dτ/dt`` and ``d²τ/dt²`` by autograd on the scalar times.

    Each ``τ(t_i)`` depends on ``t_i`` only, so the gradient of the sum gives
    the element-wise derivative. The graph is kept (``create_graph=True``) so
    losses built on the derivatives train ``net``.

    Parameters
    ----------
    net
        Maps ``(T,)`` → ``(T,)``.
    t
        Times ``(T,)`` in [0, 1].
    """
    with torch.enable_grad():
        t = t.detach().clone().requires_grad_(True)
        tau = net(t)
        (d1,) = torch.autograd.grad(tau.sum(), t, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), t, create_graph=True)
    return tau, d1, d2


@dataclass
class GammaDerivatives:
    """``γ`` and its time derivatives at one time per batch element, ``(B, 1, H, W)`` each."""

    gamma: torch.Tensor
    one_minus_gamma: torch.Tensor
    dgamma: torch.Tensor
    d2gamma: torch.Tensor


def gamma_derivatives(lam: torch.Tensor, tau_net: nn.Module, t: torch.Tensor) -> GammaDerivatives:
    """``γ = exp(−λτ)``, ``∂γ/∂t = −λτ'γ`` and ``∂²γ/∂t² = γ·((λτ')² − λτ'')``.

    Parameters
    ----------
    lam
        ``(B, 1, H, W)`` per-pixel rate.
    tau_net
        The monotone time network ``τ_γ``.
    t
        ``(B,)`` times.
    """
    with torch.autocast(device_type=t.device.type, enabled=False):
        tau, d1, d2 = tau_derivatives(tau_net, t)
    shape = (-1, 1, 1, 1)
    a = lam * tau.reshape(shape)
    gamma = torch.exp(-a)
    rate = lam * d1.reshape(shape)
    return GammaDerivatives(
        gamma=gamma,
        one_minus_gamma=-torch.expm1(-a),
        dgamma=-rate * gamma,
        d2gamma=gamma * (rate**2 - lam * d2.reshape(shape)),
    )
