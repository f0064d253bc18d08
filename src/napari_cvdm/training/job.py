"""One training job for the command line and the Fine-tune widget: data, split, network, trainer, model file.

>>> job = TrainingJob.create(get_task("sr"), simulated_data(get_task("sr"), 3000, seed=1),
...                          TrainConfig(steps=6000, seed=1))          # doctest: +SKIP
>>> result = job.run()                                                # doctest: +SKIP
>>> job.save("sr.safetensors", result, command="...")                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.normalize import Normalization
from ..data.simulate import TEST_SEED, VALIDATION_SEED
from ..diffusion.denoiser import UNetConfig
from ..diffusion.network import CVDMNetwork, NetworkConfig
from ..diffusion.schedule import ScheduleConfig
from ..inference.devices import resolve_device
from ..inference.models import CVDMModel, load_model, save_model
from ..inference.predict import SamplingOptions, predict_image
from ..physics.optics import Optics
from ..tasks import Task
from .distributed import DistributedContext, init_distributed, rank_device
from .resume import resume_notes
from .train import TrainConfig, Trainer, TrainResult, Validator, new_network
from .training_data import TrainingData, pair_batches, request_data

__all__ = [
    "NetworkOptions",
    "network_config",
    "StartingPoint",
    "starting_point",
    "pair_validator",
    "TrainingJob",
    "VALIDATION_SEED",
    "TEST_SEED",
    "TrainingRequest",
    "prepare_training",
]


@dataclass(frozen=True)
class NetworkOptions:
    """Architecture of a new model; ``None`` keeps the default of :class:`~napari_cvdm.diffusion.UNetConfig`.

    Parameters
    ----------
    schedule
        ``learned`` (CVDM) or the fixed ``cosine`` ablation baseline.
    base_channels
        U-Net width at the finest level.
    channel_mults
        Width multipliers per level, e.g. 1,2,2,4.
    res_blocks
        Residual blocks per level.
    space_to_depth
        Pixel-unshuffle factor (default: the task's; 2 doubles the receptive field at the same cost).
    schedule_space_to_depth
        Pixel-unshuffle factor of the schedule's λ U-Net (default 1: it runs on the output grid; 2 makes it 4×
        cheaper, which matters for large tiled images where λ(x) is computed tile by tile).
    """

    schedule: str = field(default="learned", metadata={"cli": "--schedule", "choices": ("learned", "cosine")})
    base_channels: int | None = field(default=None, metadata={"cli": "--base-channels"})
    channel_mults: tuple[int, ...] | None = field(default=None, metadata={"cli": "--channel-mults"})
    res_blocks: int | None = field(default=None, metadata={"cli": "--res-blocks"})
    space_to_depth: int | None = field(default=None, metadata={"cli": "--space-to-depth"})
    schedule_space_to_depth: int = field(default=1, metadata={"cli": "--schedule-space-to-depth"})


def network_config(
    task: Task, normalization: Normalization, options: NetworkOptions = NetworkOptions()
) -> NetworkConfig:
    """The architecture of a new model of ``task``: :class:`UNetConfig`'s defaults, the task's condition
    channels and pixel-unshuffle factor, and the options given."""
    changes = {
        k: v
        for k, v in (
            ("base_channels", options.base_channels),
            ("channel_mults", options.channel_mults),
            ("num_res_blocks", options.res_blocks),
            ("space_to_depth", options.space_to_depth or task.space_to_depth),
        )
        if v is not None
    }
    return NetworkConfig(
        cond_channels=task.cond_channels(normalization),
        schedule=options.schedule,
        denoiser=UNetConfig(**changes),
        schedule_net=ScheduleConfig(space_to_depth=options.schedule_space_to_depth),
    )


@dataclass
class StartingPoint:
    """What a run starts from: a network, its normalisation and optics, and the parent model (or ``None``)."""

    network: CVDMNetwork
    normalization: Normalization
    optics: Optics
    parent: CVDMModel | None
    start: str | None


def starting_point(
    task: Task,
    start: str | Path | None,
    optics: Optics | None = None,
    options: NetworkOptions = NetworkOptions(),
    seed: int = 0,
    changes: dict[str, Any] | None = None,
) -> StartingPoint:
    """A model to fine-tune (``"sr"``, ``"qpi"`` or a file: its architecture and normalisation are kept), or a
    new network. ``optics``: the optics of the new data (default: the parent's, or the task's), with the fields in
    ``changes`` changed (``ValueError`` for a field the task's optics lacks)."""
    parent = load_model(start, task=task) if start is not None else None
    optics = task.optics_with(changes or {}, optics or (parent.optics if parent is not None else None))
    if parent is None:
        norm = task.default_normalization(optics)
        return StartingPoint(new_network(network_config(task, norm, options), seed), norm, optics, None, None)
    return StartingPoint(parent.network, parent.normalization, optics, parent, str(start))


def pair_validator(
    task: Task, pairs: Sequence[tuple[np.ndarray, np.ndarray]], normalization: Normalization, options: SamplingOptions
) -> Validator | None:
    """Mean PSNR (the task's score) of the prediction path users get, pair ``i`` sampled with seed ``i``."""
    if not pairs:
        return None

    def score(network: CVDMNetwork) -> float:
        return float(
            np.mean(
                [
                    task.scores(
                        predict_image(network, task, normalization, inp, dataclasses.replace(options, seed=i)).mean, tgt
                    ).psnr
                    for i, (inp, tgt) in enumerate(pairs)
                ]
            )
        )

    return score


@dataclass
class TrainingJob:
    """A training run of a task: the trainer, and how to write its result as a model file with its lineage."""

    task: Task
    start: StartingPoint
    data: TrainingData
    config: TrainConfig
    trainer: Trainer
    #: Who made the model, its licence and what it is for, as the model file records them (``training.sharing``).
    sharing: dict[str, Any] = field(default_factory=dict)
    #: How a resumed run differs from the run that wrote its checkpoint (:func:`~.resume.resume_notes`).
    resume_notes: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        task: Task,
        data: TrainingData,
        config: TrainConfig,
        start: StartingPoint | None = None,
        device: torch.device | str = "cpu",
        checkpoint: str | Path | None = None,
        log: str | Path | None = None,
        dist: DistributedContext | None = None,
        validation: SamplingOptions | None = None,
    ) -> TrainingJob:
        """Build the trainer (``start``: a new network with the default architecture when ``None``;
        ``validation``: how validation samples, default 4 samples × 20 steps on ``device``)."""
        start = start or starting_point(task, None, seed=config.seed)
        validation = validation or SamplingOptions(
            config.validation_samples, config.validation_steps, device=str(torch.device(device))
        )
        trainer = Trainer(
            start.network,
            pair_batches(task, data.train, start.normalization, config),
            config,
            device,
            pair_validator(task, data.validation, start.normalization, validation),
            checkpoint,
            log,
            dist,
            identity={"task": task.name, "normalization": start.normalization.to_dict()},
        )
        return cls(task, start, data, config, trainer)

    def run(self, callback: Any = None) -> TrainResult:
        """Train (see :meth:`~napari_cvdm.training.train.Trainer.run`); ``callback(TrainProgress)`` may return False."""
        return self.trainer.run(callback)

    def record(self, result: TrainResult, command: str) -> dict[str, Any]:
        """The ``training`` block of the model file, with the lineage of fine-tuned models."""
        lineage = []
        parent = self.start.parent
        if parent is not None:
            lineage = list(parent.metadata.get("training", {}).get("lineage", []))
            lineage.append(
                {
                    "name": parent.name,
                    "path": str(parent.path) if parent.path else None,
                    "training": {k: v for k, v in parent.metadata.get("training", {}).items() if k != "lineage"},
                }
            )
        return {
            "task": self.task.name,
            "steps": result.steps_done,
            "seed": self.config.seed,
            "data": self.data.record,
            "config": dataclasses.asdict(self.config),
            "from": self.start.start,
            "lineage": lineage,
            "best_val_psnr": result.best_val_psnr,
            "stopped_early": result.stopped_early,
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "world_size": self.trainer.dist.world_size,
            "sharing": self.sharing,
        }

    def save(
        self,
        path: str | Path,
        result: TrainResult,
        command: str,
        default_steps: int | None = None,
        name: str | None = None,
    ) -> Path:
        """Write the trained model (the parent's default steps when fine-tuning)."""
        parent = self.start.parent
        steps = parent.default_steps if parent is not None and default_steps is None else default_steps
        kwargs = {} if steps is None else {"default_steps": steps}
        return save_model(
            path,
            result.network,
            self.task,
            self.start.normalization,
            self.start.optics,
            self.record(result, command),
            name=name,
            **kwargs,
        )


@dataclass(frozen=True)
class TrainingRequest:
    """Train or fine-tune a model and write a .safetensors file, with checkpoints and --resume (several GPUs:
    torchrun --nproc_per_node N -m napari_cvdm train ...).

    The optimisation (:class:`~napari_cvdm.training.train.TrainConfig`), the architecture of a new model
    (:class:`NetworkOptions`) and the optics are given beside the request.

    Parameters
    ----------
    task
        sr or qpi.
    output
        Model file to write (.safetensors).
    pairs
        Folder with inputs/ and targets/ to train on.
    simulate
        Train on this many pairs simulated on the fly instead.
    from_model
        Fine-tune this model (sr, qpi or a file): its architecture, normalisation and optics are kept.
    size
        Simulated input side in pixels (default: the task's).
    classes
        Structure classes (sr) or phase sources (qpi) to simulate (default: the task's training classes).
    images
        Folder of grayscale images to draw phase from (qpi).
    validation_fraction
        Share of the pairs held out for validation (with pairs).
    validation_per_class
        Validation pairs simulated per class (with --simulate; another seed than training's).
    checkpoint
        Checkpoint file (default: the output with .ckpt.safetensors).
    resume
        Continue from the checkpoint.
    log
        JSON-lines log (default: the output with .log.jsonl).
    device
        auto, cpu, cuda or mps.
    default_steps
        Sampling steps recorded in a new model.
    across_optics
        With --simulate: each pair at optics drawn over the task's range (sr: pixels 40–130 nm, NA 0.8–1.49,
        emission 450–680 nm), resampled to the model's by physics similarity.
    variant
        With --simulate: draw --variant-share of the pairs as this variant of the simulator (sr: aberrated — the
        structure up to 0.8 depths of field out of focus, up to 0.15 waves of spherical aberration, as real
        microscopes see it; the target stays ideal; cytosol — the structure inside cells whose cytoplasm glows, in
        input and target, as labelled cells show it).
    variant_share
        The share of the simulated pairs drawn as --variant.
    authors, license, description
        Recorded in the model file for sharing it (napari-cvdm export): who made it, its SPDX licence, what it is
        for.
    """

    task: str = field(metadata={"cli": "--task", "choices": ("sr", "qpi")})
    output: Path = field(metadata={"cli": "--output"})
    pairs: Path | None = field(default=None, metadata={"cli": "--pairs"})
    simulate: int | None = field(default=None, metadata={"cli": "--simulate"})
    from_model: str | None = field(default=None, metadata={"cli": "--from"})
    size: int | None = field(default=None, metadata={"cli": "--size"})
    classes: list[str] | None = field(default=None, metadata={"cli": "--classes|--structures|--sources"})
    images: Path | None = field(default=None, metadata={"cli": "--images"})
    validation_fraction: float = field(default=0.1, metadata={"cli": "--validation-fraction"})
    validation_per_class: int = field(default=1, metadata={"cli": "--validation-per-class"})
    checkpoint: Path | None = field(default=None, metadata={"cli": "--checkpoint"})
    resume: bool = field(default=False, metadata={"cli": "--resume"})
    log: Path | None = field(default=None, metadata={"cli": "--log"})
    device: str = field(default="auto", metadata={"cli": "--device"})
    default_steps: int = field(default=20, metadata={"cli": "--default-steps"})
    across_optics: bool = field(default=False, metadata={"cli": "--across-optics"})
    variant: str | None = field(default=None, metadata={"cli": "--variant"})
    variant_share: float = field(default=0.5, metadata={"cli": "--variant-share"})
    authors: list[str] | None = field(default=None, metadata={"cli": "--authors"})
    license: str | None = field(default=None, metadata={"cli": "--license"})
    description: str | None = field(default=None, metadata={"cli": "--description"})

    def __post_init__(self) -> None:
        if Path(self.output).suffix != ".safetensors":
            raise ValueError(f"--output {self.output}: model files end in .safetensors")
        if self.validation_per_class < 1:
            raise ValueError(f"--validation-per-class {self.validation_per_class}: give at least 1")
        if self.variant is not None and self.simulate is None:
            raise ValueError(f"--variant {self.variant} is a kind of simulated pair: give --simulate N")
        if (self.pairs is None) == (self.simulate is None):
            raise ValueError(
                "give either a folder of pairs (--pairs DIR) or a number of pairs to simulate (--simulate N)"
            )

    @property
    def checkpoint_path(self) -> Path:
        """Where checkpoints go."""
        return self.checkpoint or Path(self.output).with_suffix(".ckpt.safetensors")


def prepare_training(
    request: TrainingRequest,
    config: TrainConfig,
    network: NetworkOptions = NetworkOptions(),
    optics: dict[str, Any] | None = None,
) -> TrainingJob:
    """A :class:`TrainingJob` for a request: device (joining the process group under torchrun), the starting
    model (loaded before the data, so that a bad ``from_model`` fails at once), the data, and the checkpoint when
    resuming.

    Parameters
    ----------
    optics
        Optics values that differ from the starting model's (or the task's defaults).
    """
    from ..tasks import get_task

    if config.seed in (TEST_SEED, VALIDATION_SEED):
        raise ValueError(f"seed {config.seed} is reserved for the held-out evaluation sets")
    task = get_task(request.task)
    device = resolve_device(request.device)
    dist = init_distributed(device)
    device = rank_device(device, dist)
    start = starting_point(task, request.from_model, None, network, config.seed, optics)
    data = request_data(task, request, start.optics, config.seed, min(16, config.patch_size))
    job = TrainingJob.create(
        task,
        data,
        config,
        start,
        device,
        request.checkpoint_path,
        request.log or Path(request.output).with_suffix(".log.jsonl"),
        dist,
    )
    job.sharing = {k: v for k in ("authors", "license", "description") if (v := getattr(request, k)) is not None}
    if request.resume:
        if not request.checkpoint_path.exists():
            raise ValueError(f"--resume: no checkpoint at {request.checkpoint_path}")
        saved = job.trainer.load_checkpoint(request.checkpoint_path)
        job.resume_notes = resume_notes(saved, config, job.trainer.step)
    return job
