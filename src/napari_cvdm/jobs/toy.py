"""A toy conditional problem that exercises the whole CVDM core in about a minute.

Target ``y``: a sum of random Gaussian spots and bars on a dark background
(values about in [−1, 1]). Condition ``x``: ``y`` blurred and with Gaussian
noise. A small CVDM trained on freshly drawn pairs must reconstruct ``y`` from
``x`` much better than ``x`` itself; this is the foundation's end-to-end check
(the bundled models are trained on the optical simulators instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.metrics import psnr
from ..diffusion.denoiser import UNetConfig
from ..diffusion.network import CVDMNetwork, NetworkConfig
from ..diffusion.sampler import ProgressCallback, sample
from ..diffusion.schedule import ScheduleConfig
from ..training.train import BatchSource, TrainConfig, Trainer, TrainProgress, new_network

__all__ = ["ToyConfig", "ToyRequest", "ToyResult", "toy_pairs", "toy_network_config", "train_toy", "evaluate_toy"]


@dataclass(frozen=True)
class ToyConfig:
    """Size and difficulty of the toy problem and its training budget.

    Parameters
    ----------
    size
        Side of the square images, pixels.
    noise
        Standard deviation of the Gaussian noise added to the condition.
    blur
        Gaussian blur of the condition, pixels (σ).
    steps
        Optimiser steps.
    batch
        Pairs per step.
    lr
        AdamW learning rate (50 warm-up steps, then a cosine decay).
    max_seconds
        Wall-clock budget of the training, seconds.
    schedule
        learned (CVDM) or the fixed cosine baseline.
    seed
        Random seed of the training run.
    """

    size: int = 32
    noise: float = 0.5
    blur: float = 1.0
    steps: int = 5000
    batch: int = 16
    lr: float = 2e-3
    max_seconds: float = field(default=60.0, metadata={"cli": "--seconds", "positive": True})
    schedule: str = field(default="learned", metadata={"cli": "--schedule", "choices": ("learned", "cosine")})
    seed: int = field(default=0, metadata={"cli": "--seed", "parse": int})
    denoiser: UNetConfig = field(
        default_factory=lambda: UNetConfig(
            in_channels=1,
            out_channels=1,
            base_channels=16,
            channel_mults=(1, 2, 2),
            num_res_blocks=1,
            attention_levels=(2,),
            num_heads=2,
            embed_channels=16,
        )
    )


def toy_network_config(cfg: ToyConfig) -> NetworkConfig:
    """Network of the toy problem: a small denoiser and a tiny schedule net."""
    return NetworkConfig(
        target_channels=1,
        cond_channels=1,
        schedule=cfg.schedule,
        denoiser=cfg.denoiser,
        schedule_net=ScheduleConfig(base_channels=8, channel_mults=(1, 2), hidden=64),
    )


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(img, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))


def toy_pairs(n: int, cfg: ToyConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pairs.

    Returns
    -------
    x, y
        Condition and target, each ``(n, 1, size, size)``, float32.
    """
    s = cfg.size
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    y = torch.zeros(n, 1, s, s)
    n_obj = 6
    cx = torch.rand(n, n_obj, 1, 1, generator=generator) * s
    cy = torch.rand(n, n_obj, 1, 1, generator=generator) * s
    sx = 1.5 + 3.0 * torch.rand(n, n_obj, 1, 1, generator=generator)
    sy = 1.5 + 3.0 * torch.rand(n, n_obj, 1, 1, generator=generator)
    amp = 0.5 + 1.0 * torch.rand(n, n_obj, 1, 1, generator=generator)
    blobs = amp * torch.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    y = blobs.sum(dim=1, keepdim=True).clamp(max=2.0) - 1.0
    x = _gaussian_blur(y, cfg.blur) + cfg.noise * torch.randn(y.shape, generator=generator)
    return x, y


@dataclass(frozen=True)
class ToyRequest:
    """Train a tiny CVDM on a toy problem for about a minute and write its input, target, mean and std as
    TIFFs (a self-check of the core).

    Parameters
    ----------
    output_dir
        Folder for the TIFFs.
    """

    output_dir: Path = field(default=Path("cvdm-toy"), metadata={"cli": "--output-dir"})


@dataclass
class ToyResult:
    """Outcome of :func:`train_toy` / :func:`evaluate_toy`."""

    network: CVDMNetwork
    losses: list[float]
    seconds: float
    steps_done: int


def toy_batches(cfg: ToyConfig) -> BatchSource:
    """Fresh toy pairs for every step, drawn from the step's generator."""

    def draw(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return toy_pairs(cfg.batch, cfg, torch.Generator().manual_seed(int(rng.integers(2**62))))

    return draw


def train_toy(cfg: ToyConfig, callback: Callable[[int, float], None] | None = None) -> ToyResult:
    """Train a small CVDM on freshly drawn toy pairs with the project's :class:`~napari_cvdm.training.train.Trainer`.

    Parameters
    ----------
    cfg
        Problem and budget (training stops after ``cfg.steps`` or ``cfg.max_seconds``).
    callback
        Called as ``callback(step, loss)`` after every step.
    """
    config = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch,
        patch_size=cfg.size,
        lr=cfg.lr,
        warmup_steps=50,
        lr_decay_steps=100 * cfg.steps,  # the learning rate stays at its peak: a minute is all warm-up and climb
        ema_decay=0.0,  # a minute of training is too short for weight averaging
        seed=cfg.seed,
        checkpoint_every=cfg.steps,
        validate_every=0,
        log_every=cfg.steps,
        bf16=False,
    )
    trainer = Trainer(new_network(toy_network_config(cfg), cfg.seed), toy_batches(cfg), config)
    losses: list[float] = []
    t0 = time.perf_counter()

    def report(progress: TrainProgress) -> bool:
        losses.append(progress.loss["total"])
        if callback is not None:
            callback(progress.step, losses[-1])
        return time.perf_counter() - t0 <= cfg.max_seconds

    result = trainer.run(report)
    return ToyResult(
        network=result.network, losses=losses, seconds=time.perf_counter() - t0, steps_done=result.steps_done
    )


@dataclass
class ToyScores:
    """PSNR (dB) of the condition and of the sampled mean against the target."""

    psnr_condition: float
    psnr_mean: float
    mean: np.ndarray
    std: np.ndarray
    condition: np.ndarray
    target: np.ndarray


def evaluate_toy(
    net: CVDMNetwork,
    cfg: ToyConfig,
    n_images: int = 8,
    n_samples: int = 8,
    steps: int = 50,
    seed: int = 1234,
    callback: ProgressCallback | None = None,
) -> ToyScores:
    """Sample held-out toy pairs (a seed never used in training) and score them.

    Returns the PSNRs averaged over ``n_images`` and the last image's
    condition, target, mean and std (each ``(size, size)``).
    """
    gen = torch.Generator().manual_seed(seed)
    x, y = toy_pairs(n_images, cfg, gen)
    p_cond, p_mean = [], []
    net.eval()
    for i in range(n_images):
        s = sample(net, x[i : i + 1], n_samples, steps, torch.Generator().manual_seed(seed + i), callback=callback)
        mean, std = s.mean(0)[0].numpy(), s.std(0)[0].numpy()
        tgt = y[i, 0].numpy()
        p_cond.append(psnr(x[i, 0].numpy(), tgt, 2.0))
        p_mean.append(psnr(mean, tgt, 2.0))
    return ToyScores(float(np.mean(p_cond)), float(np.mean(p_mean)), mean, std, x[-1, 0].numpy(), y[-1, 0].numpy())
