"""Ancestral sampling on a (learned or fixed) per-pixel schedule.

For a step from ``t`` to ``s < t`` with per-pixel signal fractions
``γ_t < γ_s`` the posterior ``q(z_s | z_t, y)`` is Gaussian with

* ``α_{t|s}² = γ_t/γ_s`` and ``σ_{t|s}² = 1 − γ_t/γ_s``,
* mean ``(z_t − σ_{t|s}²/√(1−γ_t)·ε̂) / α_{t|s}``,
* variance ``σ_{t|s}²·(1−γ_s)/(1−γ_t)``,

evaluated element-wise, so any number of steps on the continuous schedule can
be taken. ``λ(x)`` and ``τ`` on the time grid are computed **once**; the step's
coefficient maps and the denoiser's noise-level embedding (FiLM maps) once per
step for all samples; each sample then costs the rest of one denoiser pass per
step. The result is ``z_0/√γ(0)``.

:func:`sample` runs all samples together (the cheapest order: one embedding per step). :func:`sample_in_rounds`
finishes the samples in rounds of 2, 2, 4, 8, … and hands the finished ones to the callback after each round
(``SamplingProgress.partial``), so a viewer can show a running mean and std; the callback may then answer
:attr:`Stop.KEEP` to end the run with the samples finished so far. Every sample has its own seed, so neither the
chunks nor the rounds change the samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .denoiser import Denoiser
from .network import CVDMNetwork
from .progress import KeepRequested, ProgressCallback, SamplingCancelled, SamplingProgress, Stop, ask, cancel_check
from .tiling import balanced_tile, default_overlap, tiled, tiled_denoiser

__all__ = [
    "SamplingProgress",
    "SamplingCancelled",
    "KeepRequested",
    "Stop",
    "ProgressCallback",
    "StepCoefficients",
    "step_coefficients",
    "time_grid",
    "schedule_map",
    "cancel_check",
    "sample",
    "sample_in_rounds",
    "round_sizes",
    "passes_in_rounds",
    "sample_seeds",
]


def sample_seeds(generator: torch.Generator, n_samples: int) -> list[int]:
    """One seed per sample, drawn from ``generator``.

    Each sample then has its own noise stream, so results do not depend on how
    the samples are split into chunks.
    """
    # drawn on the generator's own device: a CUDA generator cannot draw on the default (CPU) device
    seeds = torch.randint(0, 2**62, (n_samples,), generator=generator, device=generator.device)
    return [int(s) for s in seeds.tolist()]


def _noise(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generators])


def time_grid(steps: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Times ``1 = t_0 > t_1 > … > t_steps = 0`` of the ancestral steps, shape ``(steps + 1,)``."""
    return torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=dtype)


def schedule_map(
    net: CVDMNetwork,
    x: torch.Tensor,
    tile: int | None = None,
    overlap: int | None = None,
    after_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """The schedule's per-pixel map ``λ(x)``, shape ``(1, 1, H, W)``, for a condition ``(1, C, H, W)``.

    With ``tile`` (the denoiser's tile side: what fits in memory), the schedule network runs on overlapping tiles
    blended as in :func:`sample`, at most ``tile`` pixels wide. ``overlap`` defaults to
    :func:`~napari_cvdm.diffusion.tiling.default_overlap` of the λ U-Net's own stride (16 pixels for ``sr``),
    not the denoiser's (128): tiled λ differs from the whole image's by the same 0.5 % on average with overlaps
    of 16 to 256 pixels (its tiles' GroupNorm statistics set that). The tiles are re-balanced for the smaller
    overlap (:func:`~napari_cvdm.diffusion.tiling.balanced_tile`): at 8192², 1.02× the image computed instead of
    the denoiser tiles' 1.16×. ``after_tile`` is called after each tile (it may raise to cancel).
    """
    lam_fn = net.schedule.lam
    if tile is not None:
        stride = net.schedule.stride
        overlap = default_overlap(tile, stride) if overlap is None else overlap
        tile = balanced_tile(tuple(x.shape[-2:]), tile // stride * stride, stride, overlap)
        lam_fn = tiled(lam_fn, tile, overlap, stride, after_tile)
    with torch.inference_mode():
        return lam_fn(x)


@dataclass(frozen=True)
class StepCoefficients:
    """Per-pixel maps ``(1, 1, H, W)`` of one ancestral step from ``t`` to ``s < t``.

    ``ŷ = z_t·inv_sqrt_gamma_t − ε̂·eps_to_y`` and ``z_s = keep_z·z_t + take_y·ŷ + noise_std·ε``.
    """

    inv_sqrt_gamma_t: torch.Tensor  #: ``1/√γ_t``
    eps_to_y: torch.Tensor  #: ``σ_t/√γ_t``
    keep_z: torch.Tensor  #: ``α_{t|s}·σ_s²/σ_t²``
    take_y: torch.Tensor  #: ``√γ_s·σ_{t|s}²/σ_t²``
    noise_std: torch.Tensor  #: ``σ_{t|s}·σ_s/σ_t``


def step_coefficients(lam: torch.Tensor, tau_t: torch.Tensor, tau_s: torch.Tensor) -> StepCoefficients:
    """The maps of one step on the schedule ``γ = exp(−λ(x)·τ)``.

    Parameters
    ----------
    lam
        ``λ(x)``, shape ``(1, 1, H, W)``.
    tau_t, tau_s
        ``τ`` at the step's start and end (scalars, ``tau_t > tau_s``).
    """
    a_t, a_s = lam * tau_t, lam * tau_s
    var_t = (-torch.expm1(-a_t)).clamp_min(1e-12)  # σ_t² = 1 − γ_t
    var_s = (-torch.expm1(-a_s)).clamp_min(0.0)
    var_ts = (-torch.expm1(-(a_t - a_s))).clamp_min(0.0)  # σ_{t|s}² = 1 − γ_t/γ_s
    inv_sqrt_gamma_t = torch.exp(0.5 * a_t)
    return StepCoefficients(
        inv_sqrt_gamma_t=inv_sqrt_gamma_t,
        eps_to_y=var_t.sqrt() * inv_sqrt_gamma_t,
        keep_z=torch.exp(-0.5 * (a_t - a_s)) * var_s / var_t,
        take_y=torch.exp(-0.5 * a_s) * var_ts / var_t,
        noise_std=(var_ts * var_s / var_t).sqrt(),
    )


def _denoiser_for(
    net: CVDMNetwork, tile: int | None, overlap: int | None, after_tile: Callable[[], None] | None = None
) -> tuple[Callable, Callable | None]:
    """The denoiser as the sampler calls it (tiled and blended, or whole) and, for whole images, the noise-level
    embedding that is the same for every sample (computed once per step)."""
    if tile is None:
        return net.denoiser, net.denoiser.noise_embedding if isinstance(net.denoiser, Denoiser) else None
    overlap = default_overlap(tile, net.stride) if overlap is None else overlap
    return tiled(net.denoiser, tile, overlap, net.stride, after_tile), None


def _all_samples_tiled(
    net: CVDMNetwork, tile: int | None, overlap: int | None, after_tile: Callable[[], None] | None
) -> Callable | None:
    """For a tiled image and a denoiser with a noise-level embedding: ε̂ of every sample at once, tile by tile, each
    tile's embedding shared by all chunks (:func:`~napari_cvdm.diffusion.tiling.tiled_denoiser`); else ``None``."""
    if tile is None or not isinstance(net.denoiser, Denoiser):
        return None
    overlap = default_overlap(tile, net.stride) if overlap is None else overlap
    return tiled_denoiser(net.denoiser, tile, overlap, net.stride, after_tile)


def _ancestral_update(
    z: torch.Tensor, eps_hat: torch.Tensor, coef: StepCoefficients, last: bool, noise: Callable[[], torch.Tensor]
) -> None:
    """One ancestral step of ``z`` in place: the posterior mean plus fresh noise (the estimate of ``y`` at the
    last step)."""
    y_hat = (z * coef.inv_sqrt_gamma_t).addcmul_(eps_hat.to(z.dtype), coef.eps_to_y, value=-1.0)
    if last:
        z.copy_(y_hat)
        return
    z.mul_(coef.keep_z).addcmul_(coef.take_y, y_hat)
    z.addcmul_(coef.noise_std, noise())


#: Rows updated at once on a tiled image: the step's coefficient maps and the estimate of ``y`` (and their
#: temporaries) are made for a band of rows, never for the whole image (at 8192², each map is 256 MB).
UPDATE_BAND_ROWS = 256


def _update_in_bands(
    z: torch.Tensor,
    eps_hat: torch.Tensor,
    lam: torch.Tensor,
    tau_t: torch.Tensor,
    tau_s: torch.Tensor,
    last: bool,
    noise: Callable[[], torch.Tensor],
    rows: int = UPDATE_BAND_ROWS,
) -> None:
    """:func:`_ancestral_update` of ``z`` ``(B, C, H, W)`` in place, with :func:`step_coefficients` of ``lam``
    ``(1, 1, H, W)`` made for ``rows`` rows at a time: the same values (every operation is element-wise) without
    the whole image's maps. The fresh noise is drawn for the whole image, as :func:`_ancestral_update` draws it."""
    fresh = None if last else noise()
    for top in range(0, z.shape[-2], rows):
        band = (..., slice(top, top + rows), slice(None))
        coef = step_coefficients(lam[band], tau_t, tau_s)
        _ancestral_update(z[band], eps_hat[band], coef, last, lambda band=band: fresh[band])


def _check_condition(x: torch.Tensor, n_samples: int, steps: int) -> None:
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"sample() takes one condition of shape (1, C, H, W), got {tuple(x.shape)}")
    if n_samples < 1 or steps < 1:
        raise ValueError(f"n_samples and steps must be >= 1, got {n_samples} and {steps}")


def _chunks(n_samples: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks of samples denoised together (all at once for ``None``)."""
    chunk = n_samples if chunk_size is None else max(1, min(chunk_size, n_samples))
    return [(start, min(start + chunk, n_samples)) for start in range(0, n_samples, chunk)]


class _Run:
    """What every group of samples of one sampling run shares: the condition, λ(x), τ on the time grid, the
    (tiled or whole) denoiser and the progress count over all groups."""

    def __init__(
        self,
        net: CVDMNetwork,
        x: torch.Tensor,
        steps: int,
        n_chunks: int,
        callback: ProgressCallback | None,
        tile: int | None,
        overlap: int | None,
        lam: torch.Tensor | None,
    ) -> None:
        self.net, self.x, self.steps, self.callback = net, x, steps, callback
        self.done, self.total = 0, steps * n_chunks
        self.shape = (net.config.target_channels, x.shape[-2], x.shape[-1])
        check = cancel_check(callback, self.progress)  # between tiles: Cancel within one tile
        self.denoise_all = _all_samples_tiled(net, tile, overlap, check)
        chunkwise = self.denoise_all is None  # else the chunk-by-chunk denoiser is never called
        self.denoise, self.noise_embedding = _denoiser_for(net, tile, overlap, check) if chunkwise else (None, None)
        self.banded = tile is not None  # a tiled image may be too large for whole-image step maps
        if lam is None:
            lam = schedule_map(net, x, tile, overlap, check)  # once
        with torch.inference_mode():
            self.lam = lam.to(x.dtype)
            self.tau = net.schedule.tau(time_grid(steps, x.device, x.dtype))  # (steps + 1,), once

    def progress(self, partial: Any = None) -> SamplingProgress:
        return SamplingProgress(self.done, self.total, partial)

    def noise(self, gens: list[torch.Generator]) -> torch.Tensor:
        return _noise(self.shape, gens, self.x.device, self.x.dtype)

    @torch.inference_mode()
    def group(self, gens: list[torch.Generator], chunks: list[tuple[int, int]]) -> torch.Tensor:
        """All steps for one group of samples (one generator each), ``chunks`` of it at a time:
        ``(len(gens), C, H, W)``."""
        x, lam, tau = self.x, self.lam, self.tau
        z_all = torch.cat([self.noise(gens[a:b]) for a, b in chunks])  # z_1, becomes y at the end
        for i in range(self.steps):
            gamma_t = torch.exp(-lam * tau[i])  # the denoiser's noise-level input, shared by all chunks
            if self.denoise_all is not None:
                self._tiled_step(z_all, gamma_t, gens, chunks, i)
                continue
            films = self.noise_embedding(gamma_t) if self.noise_embedding is not None else None
            coef = None  # the update's maps: made after the first pass, so they never sit beside its activations
            for a, b in chunks:
                z = z_all[a:b]  # a view: updated in place
                gamma, xb = gamma_t.expand(b - a, -1, -1, -1), x.expand(b - a, -1, -1, -1)
                eps_hat = self.denoise(z, xb, gamma) if films is None else self.denoise(z, xb, gamma, films=films)
                last, noise = i == self.steps - 1, lambda a=a, b=b: self.noise(gens[a:b])
                if self.banded:
                    _update_in_bands(z, eps_hat, lam, tau[i], tau[i + 1], last, noise)
                else:
                    coef = coef or step_coefficients(lam, tau[i], tau[i + 1])
                    _ancestral_update(z, eps_hat, coef, last, noise)
                del eps_hat  # before the next pass makes its own: one image-sized ε̂ at a time
                self.done += 1
                ask(self.callback, self.progress())
        return z_all

    def _tiled_step(
        self, z_all: torch.Tensor, gamma_t: torch.Tensor, gens: list[torch.Generator], chunks: list, i: int
    ) -> None:
        """Step ``i`` of every sample of a tiled image in place: ε̂ of all chunks tile by tile, then one banded
        update (the same values as chunk by chunk: each sample draws from its own generator)."""
        eps_hat = self.denoise_all(z_all, self.x, gamma_t, chunks)
        last = i == self.steps - 1
        _update_in_bands(z_all, eps_hat, self.lam, self.tau[i], self.tau[i + 1], last, lambda: self.noise(gens))
        del eps_hat
        for _ in chunks:
            self.done += 1
            ask(self.callback, self.progress())


def sample(
    net: CVDMNetwork,
    x: torch.Tensor,
    n_samples: int,
    steps: int,
    generator: torch.Generator,
    chunk_size: int | None = None,
    callback: ProgressCallback | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    lam: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw ``N`` samples ``(N, C_y, H, W)`` (normalised units) of the target given one condition.

    ``x`` is the condition ``(1, C_x, H, W)`` on the output grid (sides multiples of ``net.stride``); ``steps``
    ancestral steps on the learned schedule (any positive number); ``generator`` (on ``x``'s device) makes the
    samples reproducible; ``chunk_size`` samples are denoised together (all by default). ``callback`` gets a
    :class:`SamplingProgress` after every chunk and step; returning ``False`` raises :class:`SamplingCancelled`
    (so does :attr:`Stop.KEEP`: no sample is finished before the last step).
    ``tile``/``overlap`` run the networks on overlapping tiles blended at every step (see
    :mod:`napari_cvdm.diffusion.tiling`; the overlap defaults to
    :func:`~napari_cvdm.diffusion.tiling.default_overlap`); the callback is asked
    between tiles too, so a large image cancels within one tile. ``lam`` is the schedule
    map ``(1, 1, H, W)`` if the caller has already computed it.
    """
    _check_condition(x, n_samples, steps)
    chunks = _chunks(n_samples, chunk_size)
    run = _Run(net, x, steps, len(chunks), callback, tile, overlap, lam)
    gens = [torch.Generator(device=x.device).manual_seed(s) for s in sample_seeds(generator, n_samples)]
    return run.group(gens, chunks)


def round_sizes(n_samples: int, first: int = 2) -> list[int]:
    """Samples finished per round of :func:`sample_in_rounds`: ``first``, then as many as are done (2, 2, 4, 8, …),
    so the running result doubles its samples each round while the noise-level embedding, computed once per
    step and round, is paid only ``log2(N)`` times."""
    if n_samples < 1 or first < 1:
        raise ValueError(f"n_samples and first must be >= 1, got {n_samples} and {first}")
    sizes: list[int] = []
    done = 0
    while done < n_samples:
        size = min(max(first, done), n_samples - done)
        sizes.append(size)
        done += size
    return sizes


def passes_in_rounds(n_samples: int, steps: int, chunk_size: int | None, rounds: Sequence[int] | None = None) -> int:
    """Denoiser passes of :func:`sample_in_rounds` (its progress total): each round is split into chunks of at
    most ``chunk_size`` samples, each chunk takes ``steps`` passes."""
    sizes = round_sizes(n_samples) if rounds is None else rounds
    return steps * sum(len(_chunks(size, chunk_size)) for size in sizes)


def sample_in_rounds(
    net: CVDMNetwork,
    x: torch.Tensor,
    n_samples: int,
    steps: int,
    generator: torch.Generator,
    chunk_size: int | None = None,
    callback: ProgressCallback | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    lam: torch.Tensor | None = None,
    rounds: Sequence[int] | None = None,
) -> torch.Tensor:
    """:func:`sample`, finishing the samples in rounds and handing out those finished after each round.

    After each round the callback gets a :class:`SamplingProgress` whose ``partial`` holds the samples finished so
    far ``(N_done, C_y, H, W)``; answering :attr:`Stop.KEEP` (then, or at any step) ends the run and returns the
    samples of the rounds already finished (:class:`SamplingCancelled` when none is). The samples equal
    :func:`sample`'s for the same generator (each has its own seed). ``rounds`` are the samples per round
    (default :func:`round_sizes`); each round computes the noise-level embedding once per step, so rounds cost a
    little more than one :func:`sample` run.

    Returns
    -------
    torch.Tensor
        ``(N, C_y, H, W)`` with ``N = n_samples``, or fewer when stopped with :attr:`Stop.KEEP`.
    """
    _check_condition(x, n_samples, steps)
    rounds = list(round_sizes(n_samples) if rounds is None else rounds)
    if sum(rounds) != n_samples or min(rounds) < 1:
        raise ValueError(f"rounds {rounds} must be positive and add up to {n_samples} samples")
    groups = [_chunks(size, chunk_size) for size in rounds]
    run = _Run(net, x, steps, passes_in_rounds(n_samples, 1, chunk_size, rounds), callback, tile, overlap, lam)
    gens = [torch.Generator(device=x.device).manual_seed(s) for s in sample_seeds(generator, n_samples)]
    finished: list[torch.Tensor] = []
    start = 0
    try:
        for size, chunks in zip(rounds, groups):
            finished.append(run.group(gens[start : start + size], chunks))
            start += size
            ask(callback, run.progress(torch.cat(finished)))
    except KeepRequested:
        if not finished:
            raise SamplingCancelled("stopped before the first samples were finished: nothing to keep") from None
    return torch.cat(finished)
