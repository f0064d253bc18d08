"""The one prediction path shared by the Python API, the command line, the widgets, validation and evaluation.

:func:`predict_image` takes a network, its task and normalisation and a frozen :class:`SamplingOptions`; it
checks the input (through the task), pads to the network's stride, plans chunks and tiles within the device's
memory budget, samples plane by plane and converts the samples back to physical units. It never builds a
model object: :class:`~napari_cvdm.inference.models.CVDMModel` calls it (models → predict, never the other way).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.normalize import Normalization
from ..diffusion.network import CVDMNetwork
from ..diffusion.sampler import (
    ProgressCallback,
    SamplingProgress,
    cancel_check,
    passes_in_rounds,
    sample,
    sample_in_rounds,
    schedule_map,
)
from ..diffusion.schedule import LearnedSchedule
from ..tasks import MIN_SIDE, Task, get_task
from ..tasks.records import CheckedImage
from .devices import autocast_dtype, prepare_network, resolve_device, sampling_autocast
from .planning import SamplingPlan, device_sampling_plan, plan_sampling

__all__ = [
    "SamplingOptions",
    "Prediction",
    "PartialResult",
    "predict_image",
    "SamplingPlan",
    "plan_sampling",
    "device_sampling_plan",
]


@dataclass(frozen=True)
class SamplingOptions:
    """How a reconstruction is sampled (validated at construction).

    Parameters
    ----------
    n_samples
        Samples per image; their mean is the reconstruction, their spread the uncertainty (the std needs 2).
    steps
        Sampling steps (default: the model's).
    seed
        Random seed: the same seed gives the same result.
    device
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` (the N-th GPU, from 0) or ``mps``.
    tile_size
        Tile side in input pixels for large images (tiles overlap and are blended at every step; default: tiles
        only when the image does not fit the memory budget).
    progressive
        Finish the samples in rounds (2, 2, 4, 8, …) and hand the running mean and std to the callback after each
        (:class:`PartialResult` in ``SamplingProgress.partial``); the callback may then answer
        :attr:`~napari_cvdm.diffusion.sampler.Stop.KEEP` to keep what is done. The samples are the same; the run
        costs a little more (the noise-level embedding once per step and round). For viewers, not for batch jobs.
    """

    n_samples: int = field(default=8, metadata={"cli": "--samples"})
    steps: int | None = field(default=None, metadata={"cli": "--steps"})
    seed: int = field(default=0, metadata={"cli": "--seed", "parse": int})
    device: str = field(default="auto", metadata={"cli": "--device"})
    tile_size: int | None = field(default=None, metadata={"cli": "--tile-size"})
    progressive: bool = False

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.tile_size is not None and self.tile_size < MIN_SIDE:
            raise ValueError(f"tile size {self.tile_size} is too small; use at least {MIN_SIDE} pixels")


@dataclass
class Prediction:
    """Result of a reconstruction (numpy float32).

    Attributes
    ----------
    mean
        The reconstruction: mean of the samples, ``(2H, 2W)`` for ``sr`` (input units), ``(H, W)`` phase in
        radians (zero mean) for ``qpi``; a leading axis for stacks.
    std
        Per-pixel uncertainty, same shape and units: the standard deviation of the samples, scaled by the
        model's calibration where its file has one (:mod:`napari_cvdm.inference.uncertainty`).
    samples
        ``(N, ...)`` the samples themselves, or ``None``.
    schedule
        The learned per-pixel rate ``λ(x)`` on the output grid, or ``None`` for a fixed schedule.
    warnings
        Plain-text warnings about the input or the result (also issued as Python warnings).
    residual
        The mean pushed back through the forward model minus the input, in units of the noise, on the input's
        grid and shape (``sr`` ``(H, W)``, ``qpi`` ``(2, H, W)``; a leading axis for stacks), or ``None`` when
        not checked (:func:`~napari_cvdm.inference.consistency.check_consistency`).
    residual_rms
        One number: the RMS of the residual (the worst plane of a stack); about 1 when the result explains the
        input down to the noise.
    reference_rms
        The same for the physics estimate where the task has one (``qpi``: the iterative retrieval).
    sample_std
        The spread of the samples before calibration (``None`` when no calibration was applied: then ``std``
        is the spread).
    optics
        The optics the result was checked through — those it was reconstructed at (a model at other optics: the
        user's, or those read off the image or its file) — or ``None`` when not checked.
    """

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray | None = None
    schedule: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    residual: np.ndarray | None = None
    residual_rms: float | None = None
    reference_rms: float | None = None
    sample_std: np.ndarray | None = None
    optics: Any = None


@dataclass(frozen=True)
class PartialResult:
    """The running result of a progressive run (:attr:`SamplingOptions.progressive`) after a round of samples.

    Attributes
    ----------
    plane, n_planes
        The plane being reconstructed (0-based) and how many the input has.
    done, n_samples
        Samples of this plane finished so far, and asked for.
    prediction
        Mean and std of the finished samples of this plane, in physical units (no plane axis; the std is the
        model's calibration of their spread where its file has one, and 0 with one sample); ``samples`` and
        ``schedule`` are ``None``.
    """

    plane: int
    n_planes: int
    done: int
    n_samples: int
    prediction: Prediction


def _pad_to(t: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = t.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    return t, (h, w)


def _summary(values: torch.Tensor) -> Prediction:
    """Mean and std ``(H', W')`` or ``(C, H', W')`` of samples ``(N, ...)`` (float32; std 0 for one sample)."""
    std = values.std(0, unbiased=True) if values.shape[0] > 1 else torch.zeros_like(values[0])
    return Prediction(mean=values.mean(0).cpu().numpy().astype(np.float32), std=std.cpu().numpy().astype(np.float32))


def _partial_reporter(
    callback: ProgressCallback | None, to_values: Any, plane: int, n_planes: int, n_samples: int
) -> ProgressCallback | None:
    """The sampler's callback of one plane: the finished samples of a round become a :class:`PartialResult`."""
    if callback is None:
        return None

    def report(progress: SamplingProgress) -> Any:
        if progress.partial is None:
            return callback(progress)
        values = to_values(progress.partial).double()
        partial = PartialResult(plane, n_planes, values.shape[0], n_samples, _summary(values))
        return callback(dataclasses.replace(progress, partial=partial))

    return report


def _sample_plane(
    network: CVDMNetwork,
    task: Task,
    normalization: Normalization,
    plane: np.ndarray,
    options: SamplingOptions,
    seed: int,
    device: torch.device,
    callback: ProgressCallback | None,
    where: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Samples of one plane in physical units ``(N, H', W')`` (float64; fewer than asked when a progressive run
    was stopped and kept), its λ map (or ``None``) and the task's remarks about the input. ``where`` is the
    plane's index and the number of planes (for partial results)."""
    conditioned = task.condition(plane, normalization, device)
    padded, (h, w) = _pad_to(conditioned.cond, network.stride)
    plan = device_sampling_plan(
        network, task.gain, tuple(padded.shape[-2:]), options.n_samples, device, options.tile_size
    )
    rounds = None if options.progressive else [options.n_samples]  # one round: what `sample` does
    total = passes_in_rounds(options.n_samples, options.steps, plan.chunk, rounds)
    check = cancel_check(callback, lambda: SamplingProgress(0, total))  # λ(x) of a large image: cancel per tile
    lam_map = schedule_map(network, padded, plan.schedule_tile, after_tile=check)  # once per plane: sampler and output
    gen = torch.Generator(device=device).manual_seed(seed)

    def to_values(z: torch.Tensor) -> torch.Tensor:
        return conditioned.to_values(z[..., :h, :w])

    sampler, report = sample, callback
    if options.progressive:
        sampler = sample_in_rounds
        report = _partial_reporter(callback, to_values, *where, options.n_samples)
    with sampling_autocast(device, autocast_dtype(device)):
        out = sampler(
            network,
            padded,
            options.n_samples,
            options.steps,
            gen,
            chunk_size=plan.chunk,
            callback=report,
            tile=plan.tile,
            lam=lam_map,
        )
    lam = lam_map[0, 0, :h, :w] if isinstance(network.schedule, LearnedSchedule) else None
    return to_values(out).double(), lam, conditioned.warnings


def _prediction(
    values: list[torch.Tensor], lams: list[torch.Tensor | None], single: bool, remarks: list[str]
) -> Prediction:
    """Mean, std, samples and λ maps of the planes as numpy float32 (without the plane axis for one plane).
    Planes may have different numbers of samples (a progressive run stopped and kept): ``samples`` then holds
    as many as every plane has."""

    def stack(items: list[np.ndarray | torch.Tensor]) -> np.ndarray:
        arr = np.stack([np.asarray(i.cpu() if isinstance(i, torch.Tensor) else i, dtype=np.float32) for i in items])
        return arr[0] if single else arr

    summaries = [_summary(v) for v in values]
    n = min(v.shape[0] for v in values)
    samples = torch.stack([v[:n] for v in values], 1).cpu().numpy().astype(np.float32)  # (N, P, ...)
    return Prediction(
        mean=stack([s.mean for s in summaries]),
        std=stack([s.std for s in summaries]),
        samples=samples[:, 0] if single else samples,
        schedule=None if lams[0] is None else stack([lam.float() for lam in lams]),
        warnings=remarks,
    )


def _plane_callback(callback: ProgressCallback | None, plane: int, n_planes: int) -> ProgressCallback | None:
    """Progress of one plane as progress of the whole stack."""
    if callback is None:
        return None

    def report(progress: SamplingProgress) -> Any:
        return callback(
            dataclasses.replace(progress, done=plane * progress.total + progress.done, total=n_planes * progress.total)
        )

    return report


def predict_image(
    network: CVDMNetwork,
    task: Task | str,
    normalization: Normalization,
    image: np.ndarray | CheckedImage,
    options: SamplingOptions,
    callback: ProgressCallback | None = None,
) -> Prediction:
    """Reconstruct an image: mean and per-pixel std of ``options.n_samples`` samples.

    Parameters
    ----------
    network
        A CVDM network of ``task`` (moved to the device, eval mode).
    task
        The task (or its name).
    normalization
        How the network's inputs and targets are scaled.
    image
        ``sr``: ``(H, W)`` or a stack ``(Z|T, H, W)``; ``qpi``: ``(2, H, W)`` ordered (−dz, +dz), or
        ``(T, 2, H, W)``; or the same checked by the task (:meth:`Task.checked`, not checked again).
    options
        Sampling options; ``options.steps`` must be set (models fill in their default).
    callback
        Progress callback (see :mod:`napari_cvdm.diffusion.sampler`); returning ``False`` cancels with
        :class:`~napari_cvdm.diffusion.SamplingCancelled`.
    """
    task = get_task(task)
    if options.steps is None:
        raise ValueError("the number of sampling steps is not set (load a model, or pass steps)")
    checked = task.checked(image)
    planes = checked.planes
    dev = resolve_device(options.device)
    prepare_network(network, dev)
    values, lams, remarks = [], [], []
    for p, plane in enumerate(planes):
        v, lam, notes = _sample_plane(
            network,
            task,
            normalization,
            plane,
            options,
            options.seed + p,
            dev,
            _plane_callback(callback, p, len(planes)),
            (p, len(planes)),
        )
        values.append(v)
        lams.append(lam)
        if v.shape[0] < options.n_samples:
            notes = [*notes, _kept_remark(v.shape[0], options.n_samples, p, len(planes))]
        for remark in notes:
            if remark not in remarks:
                remarks.append(remark)
                warnings.warn(remark, stacklevel=2)
        if v.shape[0] < options.n_samples:
            break
    return _prediction(values, lams, checked.single, remarks)


def _kept_remark(done: int, n_samples: int, plane: int, n_planes: int) -> str:
    """What a result stopped and kept early is made of."""
    what = f"stopped by the user after {done} of {n_samples} samples"
    if n_planes > 1:
        what += f" of plane {plane + 1} of {n_planes}; the later planes were not reconstructed"
    return what + ": the std of few samples is itself uncertain"
