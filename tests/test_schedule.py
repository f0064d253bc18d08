"""The learned schedule: monotone, right boundary values after a fit, exact derivatives."""

import pytest
import torch

from napari_cvdm.diffusion.loss import beta_terms
from napari_cvdm.diffusion.schedule import (
    CosineSchedule,
    LearnedSchedule,
    ScheduleConfig,
    gamma_derivatives,
    tau_derivatives,
)

CFG = ScheduleConfig(base_channels=8, channel_mults=(1, 2), hidden=32)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1.5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gamma_strictly_decreasing_for_random_weights_and_inputs(seed):
    torch.manual_seed(seed)
    sched = LearnedSchedule(1, CFG).double()
    _randomise(sched, seed)
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64) * 3
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    with torch.no_grad():
        lam = sched.lam(x)
        tau = sched.tau(t)
    assert (lam > 0).all()
    assert (torch.diff(tau) > 0).all()
    log_gamma = -lam[None] * tau.view(-1, 1, 1, 1, 1)  # (T, B, 1, H, W)
    assert (torch.diff(log_gamma, dim=0) < 0).all()
    gamma = torch.exp(log_gamma)
    assert (torch.diff(gamma, dim=0) <= 0).all()
    # strictly where float64 resolves γ (away from exp() underflow and from 1 − 1e-9)
    resolved = (gamma[:-1] > 1e-250) & (gamma[:-1] < 1 - 1e-9) & (gamma[1:] > 1e-250)
    assert resolved.float().mean() > 0.3
    assert (torch.diff(gamma, dim=0)[resolved] < 0).all()


def test_time_networks_act_on_scalars_not_maps():
    sched = LearnedSchedule(1, CFG)
    t = torch.rand(5)
    assert sched.tau(t).shape == (5,)
    assert sched.tau_b(t).shape == (5,)
    assert (sched.tau_b(t) >= 0).all()


def test_derivatives_match_finite_differences():
    torch.manual_seed(0)
    sched = LearnedSchedule(1, CFG).double()
    _randomise(sched, 7)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    h = 1e-4
    lam = sched.lam(x)
    g = gamma_derivatives(lam, sched.tau_gamma, t)

    def gamma_at(tt):
        return torch.exp(-lam * sched.tau(tt).view(-1, 1, 1, 1))

    fd1 = (gamma_at(t + h) - gamma_at(t - h)) / (2 * h)
    fd2 = (gamma_at(t + h) - 2 * gamma_at(t) + gamma_at(t - h)) / h**2
    torch.testing.assert_close(g.dgamma, fd1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.d2gamma, fd2, rtol=1e-3, atol=1e-4)
    tau, d1, d2 = tau_derivatives(sched.tau_gamma, t)
    torch.testing.assert_close(d1, (sched.tau(t + h) - sched.tau(t - h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_beta_residual_vanishes_when_beta_is_minus_dgamma_over_gamma():
    torch.manual_seed(0)
    sched = LearnedSchedule(1, CFG).double()
    _randomise(sched, 3)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    lam = sched.lam(x)
    g = gamma_derivatives(lam, sched.tau_gamma, t)
    residual, _ = beta_terms(sched, lam, t, g)
    assert residual.min() > 1e-6  # a random τ_β is not consistent with γ

    # β = −(∂γ/∂t)/γ = λ·dτ_γ/dt: make τ_β exactly dτ_γ/dt
    sched.tau_b = lambda tt: tau_derivatives(sched.tau_gamma, tt)[1]
    residual, _ = beta_terms(sched, lam, t, g)
    assert residual.max() < 1e-20


def test_boundary_values_after_a_short_fit():
    torch.manual_seed(0)
    sched = LearnedSchedule(1, CFG)
    with torch.no_grad():  # start far from the boundary conditions
        sched.tau_gamma.offset.add_(1.5)
        sched.lambda_net.conv_out.bias.fill_(-2.0)
    opt = torch.optim.Adam(sched.parameters(), lr=2e-2)
    x = torch.randn(4, 1, 16, 16)
    lam0 = sched.lam(x).detach()
    g0 = torch.exp(-lam0 * sched.tau(torch.tensor([0.0, 1.0])).detach().view(2, 1, 1, 1, 1))
    assert g0[0].mean() < 0.85 and g0[1].mean() > 0.2
    for _ in range(300):
        t = torch.rand(4)
        lam = sched.lam(x)
        g = gamma_derivatives(lam, sched.tau_gamma, t)
        residual, boundary = beta_terms(sched, lam, t, g)
        loss = (residual + boundary).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        lam = sched.lam(x)
        tau = sched.tau(torch.tensor([0.0, 1.0]))
        gamma0, gamma1 = torch.exp(-lam * tau[0]), torch.exp(-lam * tau[1])
    assert gamma0.min() > 0.97
    assert gamma1.max() < 0.05


def test_cosine_schedule_is_the_usual_one():
    sched = CosineSchedule()
    t = torch.linspace(0, 1, 11)
    gamma = torch.exp(-sched.tau(t))
    assert gamma[0] == pytest.approx(1.0, abs=1e-6)
    assert gamma[-1] <= 1e-4
    assert gamma[5] == pytest.approx(0.5, abs=0.02)
    assert (torch.diff(gamma) < 0).all()
