"""The CVDM loss: terms, their combination, and that training lowers it."""

import pytest
import torch

from conftest import tiny_network
from napari_cvdm.diffusion.loss import DEFAULT_ALPHA, cvdm_loss, ddpm_loss, training_loss
from napari_cvdm.jobs.toy import ToyConfig, toy_pairs


def test_terms_are_per_example_and_combine_as_in_the_paper(tiny_net):
    x, y = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    terms = cvdm_loss(tiny_net, x, y, generator=torch.Generator().manual_seed(0))
    for name in ("total", "noise", "beta", "prior", "curvature"):
        value = getattr(terms, name)
        assert value.shape == (3,)
        assert torch.isfinite(value).all()
        assert (value >= 0).all()
    expected = terms.noise + 2 * terms.beta + 2 * terms.prior + 2 * DEFAULT_ALPHA * terms.curvature
    torch.testing.assert_close(terms.total, expected)


def test_every_part_of_the_network_gets_gradients(tiny_net):
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    cvdm_loss(tiny_net, x, y).total.mean().backward()
    for part in (
        tiny_net.schedule.lambda_net,
        tiny_net.schedule.tau_gamma,
        tiny_net.schedule.tau_beta,
        tiny_net.denoiser,
    ):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(part).__name__


def test_cosine_baseline_has_only_the_noise_term():
    net = tiny_network("cosine")
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    terms = ddpm_loss(net, x, y)
    assert torch.equal(terms.total, terms.noise)
    assert float(terms.beta.abs().sum() + terms.prior.abs().sum() + terms.curvature.abs().sum()) == 0.0
    with pytest.raises(TypeError):
        cvdm_loss(net, x, y)
    with pytest.raises(TypeError):
        ddpm_loss(tiny_network("learned"), x, y)


def test_same_generator_gives_the_same_loss(tiny_net):
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    a = cvdm_loss(tiny_net, x, y, generator=torch.Generator().manual_seed(5)).total
    b = cvdm_loss(tiny_net, x, y, generator=torch.Generator().manual_seed(5)).total
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("schedule", ["learned", "cosine"])
def test_loss_falls_over_a_short_run(schedule):
    net = tiny_network(schedule)
    cfg = ToyConfig(size=16)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        x, y = toy_pairs(8, cfg, gen)
        loss = training_loss(net, x, y, generator=gen).total.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.7 * first, (first, last)
