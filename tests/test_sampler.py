"""Ancestral sampling: exact with an oracle denoiser, reproducible, chunkable, cancellable."""

import pytest
import torch
from torch import nn

from conftest import tiny_network
from napari_cvdm.diffusion.sampler import (
    SamplingCancelled,
    SamplingProgress,
    _ancestral_update,
    _update_in_bands,
    sample,
    step_coefficients,
)


class OracleDenoiser(nn.Module):
    """Returns the true noise for a known target: the sampler must then give the target back."""

    def __init__(self, y):
        super().__init__()
        self.y = y

    def forward(self, z, x, gamma):
        return (z - gamma.sqrt() * self.y) / (1 - gamma).sqrt()


@pytest.mark.parametrize("schedule", ["learned", "cosine"])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_oracle_denoiser_gives_the_target_back(schedule, steps):
    net = tiny_network(schedule)
    if schedule == "learned":  # a non-uniform per-pixel schedule: λ from 0.3 to 1.5 across the image
        ramp = torch.linspace(0.3, 1.5, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
        net.schedule.lam = lambda x: ramp
    y = torch.randn(1, 1, 16, 16)
    net.denoiser = OracleDenoiser(y)
    out = sample(net, torch.randn(1, 1, 16, 16), 3, steps, torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 16, 16)
    torch.testing.assert_close(out, y.expand(3, -1, -1, -1), atol=1e-4, rtol=1e-4)


def _perturbed_net():
    net = tiny_network()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def test_same_seed_same_samples_other_seed_other_samples():
    net = _perturbed_net()
    x = torch.randn(1, 1, 16, 16)
    a = sample(net, x, 4, 5, torch.Generator().manual_seed(3))
    b = sample(net, x, 4, 5, torch.Generator().manual_seed(3))
    c = sample(net, x, 4, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # samples differ from each other


def test_chunking_does_not_change_the_samples():
    net = _perturbed_net()
    x = torch.randn(1, 1, 16, 16)
    whole = sample(net, x, 5, 4, torch.Generator().manual_seed(3))
    chunked = sample(net, x, 5, 4, torch.Generator().manual_seed(3), chunk_size=2)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)


def test_progress_reports_every_step_and_cancel_stops_within_one_step():
    net = _perturbed_net()
    x = torch.randn(1, 1, 16, 16)
    seen: list[SamplingProgress] = []
    sample(net, x, 4, 6, torch.Generator().manual_seed(0), chunk_size=2, callback=seen.append)
    assert [p.done for p in seen] == list(range(1, 13))
    assert all(p.total == 12 for p in seen)

    calls = []

    def cancel_at_third(progress):
        calls.append(progress.done)
        return progress.done < 3

    with pytest.raises(SamplingCancelled):
        sample(net, x, 2, 50, torch.Generator().manual_seed(0), callback=cancel_at_third)
    assert calls == [1, 2, 3]


def test_schedule_is_evaluated_once_per_run_not_per_step():
    net = _perturbed_net()
    counts = {"lam": 0, "tau": 0}
    lam, tau = net.schedule.lam, net.schedule.tau

    def counting_lam(x):
        counts["lam"] += 1
        return lam(x)

    def counting_tau(t):
        counts["tau"] += 1
        return tau(t)

    net.schedule.lam, net.schedule.tau = counting_lam, counting_tau
    sample(net, torch.randn(1, 1, 16, 16), 4, 20, torch.Generator().manual_seed(0), chunk_size=2)
    assert counts == {"lam": 1, "tau": 1}


def test_the_noise_embedding_is_computed_once_per_step_for_all_chunks():
    net = _perturbed_net()
    calls = []
    embed = net.denoiser.noise_embedding

    def counting(gamma):
        calls.append(gamma.shape[0])
        return embed(gamma)

    net.denoiser.noise_embedding = counting
    sample(net, torch.randn(1, 1, 16, 16), 5, 6, torch.Generator().manual_seed(0), chunk_size=2)
    assert calls == [1] * 6  # one per step (not per chunk of samples), for a batch of one


def test_a_shared_noise_embedding_gives_the_same_noise_estimate():
    den = _perturbed_net().denoiser
    z, x = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    gamma = torch.rand(1, 1, 16, 16) * 0.9 + 0.05
    with torch.no_grad():
        own = den(z, x, gamma.expand(3, -1, -1, -1))
        shared = den(z, x, gamma.expand(3, -1, -1, -1), films=den.noise_embedding(gamma))
    torch.testing.assert_close(own, shared)
    assert own.abs().max() > 0


def test_bad_arguments_are_refused():
    net = tiny_network()
    with pytest.raises(ValueError, match="one condition"):
        sample(net, torch.randn(2, 1, 16, 16), 2, 2, torch.Generator())
    with pytest.raises(ValueError, match=">= 1"):
        sample(net, torch.randn(1, 1, 16, 16), 0, 2, torch.Generator())


def test_round_sizes_double_and_add_up():
    from napari_cvdm.diffusion.sampler import round_sizes

    assert round_sizes(8) == [2, 2, 4]
    assert round_sizes(5) == [2, 2, 1]
    assert round_sizes(16) == [2, 2, 4, 8]
    assert round_sizes(1) == [1]
    assert round_sizes(3, first=1) == [1, 1, 1]
    with pytest.raises(ValueError):
        round_sizes(0)


def test_rounds_give_the_same_samples_and_hand_out_the_finished_ones():
    from napari_cvdm.diffusion.sampler import sample_in_rounds

    net = _perturbed_net()
    x = torch.randn(1, 1, 16, 16)
    whole = sample(net, x, 5, 4, torch.Generator().manual_seed(3))
    handed = []

    def callback(p):
        if p.partial is not None:
            handed.append((p.done, p.partial.clone()))

    rounds = sample_in_rounds(net, x, 5, 4, torch.Generator().manual_seed(3), chunk_size=2, callback=callback)
    torch.testing.assert_close(rounds, whole, atol=1e-5, rtol=1e-5)
    assert [h.shape[0] for _, h in handed] == [2, 4, 5]
    assert handed[-1][0] == 4 * (1 + 1 + 1)  # steps × chunks over the rounds (2 | 2 | 1 samples, chunks of 2)
    for _, h in handed:  # each partial is the first samples of the run
        torch.testing.assert_close(h, whole[: h.shape[0]], atol=1e-5, rtol=1e-5)


def test_keep_returns_the_finished_rounds_and_cancels_when_none_is_finished():
    from napari_cvdm.diffusion.sampler import Stop, sample_in_rounds

    net = _perturbed_net()
    x = torch.randn(1, 1, 16, 16)
    whole = sample(net, x, 8, 3, torch.Generator().manual_seed(3))
    seen = []

    def keep_after_first_round(p):  # asked mid-way through the second round
        seen.append(p.partial is not None)
        return Stop.KEEP if sum(seen) and not seen[-1] else None

    kept = sample_in_rounds(net, x, 8, 3, torch.Generator().manual_seed(3), callback=keep_after_first_round)
    assert kept.shape[0] == 2
    torch.testing.assert_close(kept, whole[:2], atol=1e-5, rtol=1e-5)
    with pytest.raises(SamplingCancelled):
        sample_in_rounds(net, x, 8, 3, torch.Generator().manual_seed(3), callback=lambda p: Stop.KEEP)
    with pytest.raises(SamplingCancelled):  # sample() finishes nothing before its last step: keep cancels
        sample(net, x, 4, 3, torch.Generator().manual_seed(3), callback=lambda p: Stop.KEEP)
    with pytest.raises(ValueError):
        sample_in_rounds(net, x, 8, 3, torch.Generator().manual_seed(3), rounds=[2, 2])


@pytest.mark.parametrize("last", [False, True])
def test_the_banded_update_of_tiled_images_equals_the_whole_image_update(last):
    gen = torch.Generator().manual_seed(0)
    z, eps_hat, noise = (torch.randn(2, 1, 10, 7, generator=gen) for _ in range(3))
    lam = 0.1 + 5 * torch.rand(1, 1, 10, 7, generator=gen)
    tau_t, tau_s = torch.tensor(0.8), torch.tensor(0.5)
    whole, banded = z.clone(), z.clone()
    _ancestral_update(whole, eps_hat, step_coefficients(lam, tau_t, tau_s), last, lambda: noise)
    _update_in_bands(banded, eps_hat, lam, tau_t, tau_s, last, lambda: noise, rows=3)  # 3 does not divide 10
    assert not torch.equal(whole, z)
    assert torch.equal(banded, whole)


def test_a_tiled_run_whose_tile_holds_the_image_gives_the_whole_image_samples():
    net = tiny_network()
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    whole = sample(net, x, 2, 4, torch.Generator().manual_seed(3))
    tiled_run = sample(net, x, 2, 4, torch.Generator().manual_seed(3), tile=16)  # one tile, banded update
    torch.testing.assert_close(tiled_run, whole, rtol=1e-5, atol=1e-6)
