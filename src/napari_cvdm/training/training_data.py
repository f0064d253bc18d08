"""Where training pairs come from: layers in memory, a folder of TIFFs, or the simulator; the validation split;
the batches the trainer draws from them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import ArrayPairs, FolderPairs, PairError, SimulatedPairs, make_batch
from ..data.normalize import Normalization
from ..data.resample import resample_last_two
from ..data.simulate import VALIDATION_SEED
from ..physics.optics import Optics
from ..tasks import Task
from .train import BatchSource, TrainConfig

__all__ = [
    "TrainingData",
    "split_validation",
    "array_data",
    "folder_data",
    "simulated_data",
    "SimulatedAcrossOptics",
    "simulated_across_optics",
    "request_data",
    "pair_batches",
]


@dataclass
class TrainingData:
    """Training pairs, held-out validation pairs and the record of where they came from (model metadata)."""

    train: Any
    validation: Sequence[tuple[np.ndarray, np.ndarray]]
    record: dict[str, Any]


def split_validation(pairs: ArrayPairs, fraction: float, seed: int) -> tuple[ArrayPairs, list]:
    """Hold out ``fraction`` of the pairs (at least one when there are two or more) for validation."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    n = len(pairs)
    n_val = 0 if n < 2 or fraction <= 0 else max(1, int(round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    train_idx = order[n_val:]
    if len(train_idx) < 1:
        raise PairError("no pairs are left for training after the validation split")
    train = ArrayPairs(pairs.task, [pairs[int(i)][0] for i in train_idx], [pairs[int(i)][1] for i in train_idx])
    return train, [pairs[int(i)] for i in order[:n_val]]


def array_data(
    task: Task,
    inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    names: Sequence[str],
    fraction: float,
    seed: int,
    min_side: int = 16,
    source: dict[str, Any] | None = None,
) -> TrainingData:
    """Pairs held in memory (napari layers; stacks are split into planes), checked and split."""
    train, val = split_validation(ArrayPairs(task, inputs, targets, names, min_side), fraction, seed)
    return TrainingData(train, val, {**(source or {}), "n_pairs": len(train) + len(val), "n_validation": len(val)})


def folder_data(task: Task, folder: str | Path, fraction: float, seed: int, min_side: int = 16) -> TrainingData:
    """Pairs from ``DIR/inputs`` + ``DIR/targets``, checked and split."""
    pairs = FolderPairs(folder, task, min_side)
    train, val = split_validation(pairs, fraction, seed)
    return TrainingData(train, val, {"pairs": str(folder), "n_pairs": len(pairs), "n_validation": len(val)})


def simulated_data(
    task: Task,
    n: int,
    seed: int,
    size: int | None = None,
    optics: Optics | None = None,
    classes: Sequence[str] = (),
    images: list[np.ndarray] | None = None,
    per_class: int = 1,
    variant: tuple[str, float] | None = None,
) -> TrainingData:
    """``n`` pairs simulated on the fly with ``optics``, and ``per_class`` validation pairs per class (another
    seed); ``variant``: ``(name, share)`` of the pairs simulated as that variant of the task's simulator."""
    source = dict(task=task, size=size or task.train_size, optics=optics, images=images, classes=list(classes))
    return _simulated(SimulatedPairs, n, seed, per_class, {**source, **_variant_fields(variant)}, {})


def _variant_fields(variant: tuple[str, float] | None) -> dict[str, Any]:
    """The :class:`SimulatedPairs` fields of a ``(name, share)`` variant (none without one)."""
    return {} if variant is None else {"variant": variant[0], "variant_share": float(variant[1])}


def _simulated(
    kind: type[SimulatedPairs], n: int, seed: int, per_class: int, source: dict[str, Any], note: dict[str, str]
) -> TrainingData:
    """``n`` pairs of ``kind`` made from ``source`` (its fields but ``n`` and ``seed``), ``per_class`` validation
    pairs per class from another seed, and the training record (``note`` before the task's ranges)."""
    train = kind(n=n, seed=seed, **source)
    val = kind(n=per_class * len(train.classes), seed=VALIDATION_SEED + 1, **source)
    task = source["task"]
    optics = source["optics"] or task.default_optics()
    record = {"simulate": n, "size": source["size"], "classes": list(train.classes), "optics": optics.to_dict()}
    record.update(note, **task.simulation_ranges())
    if train.variant is not None:
        record.update(variant=train.variant, variant_share=train.variant_share)
    return TrainingData(train, val, record)  # simulated when first needed (off the GUI thread)


@dataclass
class SimulatedAcrossOptics(SimulatedPairs):
    """Pairs simulated at optics drawn over the task's range (:meth:`Task.draw_optics`) and resampled to the
    model's optics by physics similarity (:meth:`Task.similarity_scale`): the images a model run at other optics
    sees (its objects at other scales in pixels, its noise interpolated). Pair ``i`` from seed ``(seed, i)``."""

    def _simulate(self, cls: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        base = self.optics or self.task.default_optics()
        drawn = self.task.draw_optics(rng, base)
        scale = self.task.similarity_scale(base, drawn)
        side = max(int(math.ceil(self.size / scale)), 16)
        inp, tgt = self.task.simulate(cls, side, rng, drawn, self.images, None, self.drawn_variant(rng))
        grid = (round(side * scale), round(side * scale))
        gain = tgt.shape[-1] // inp.shape[-1]
        return resample_last_two(inp, grid), resample_last_two(tgt, (gain * grid[0], gain * grid[1]))


def simulated_across_optics(
    task: Task,
    n: int,
    seed: int,
    size: int | None = None,
    optics: Optics | None = None,
    classes: Sequence[str] = (),
    per_class: int = 1,
    variant: tuple[str, float] | None = None,
) -> TrainingData:
    """``n`` pairs across the task's optics range, resampled to ``optics`` (the model's), and ``per_class``
    validation pairs per class drawn the same way (another seed); ``variant`` as for :func:`simulated_data`."""
    source = dict(task=task, size=size or task.train_size, optics=optics, classes=list(classes))
    note = {"across_optics": "drawn over the task's range, resampled to these optics"}
    return _simulated(SimulatedAcrossOptics, n, seed, per_class, {**source, **_variant_fields(variant)}, note)


def request_data(task: Task, request: Any, optics: Optics, seed: int, min_side: int) -> TrainingData:
    """The data a :class:`~napari_cvdm.training.job.TrainingRequest` names: its folder of pairs, or pairs simulated
    at ``optics`` (across the task's range with ``across_optics``; a share as a variant of the simulator)."""
    from ..data.simulate import load_grayscale_images

    if request.pairs is not None:
        return folder_data(task, request.pairs, request.validation_fraction, seed, min_side)
    images = load_grayscale_images(request.images) if request.images else None
    classes = task.check_classes(request.classes, with_images=bool(images)) or ()
    k, variant = request.validation_per_class, None
    if request.variant is not None:
        variant = (request.variant, request.variant_share)
    if request.across_optics:
        data = simulated_across_optics(task, request.simulate, seed, request.size, optics, classes, k, variant)
    else:
        data = simulated_data(task, request.simulate, seed, request.size, optics, classes, images, k, variant)
    data.record["images"] = str(request.images) if request.images else None
    return data


def pair_batches(task: Task, pairs: Any, normalization: Normalization, config: TrainConfig) -> BatchSource:
    """Batches of ``config.batch_size`` random pairs, random patches, flips and rotations."""
    if len(pairs) < 1:
        raise PairError("no training pairs")

    def draw(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.integers(len(pairs), size=config.batch_size)
        return make_batch([pairs[int(i)] for i in idx], task, normalization, config.patch_size, rng)

    return draw
