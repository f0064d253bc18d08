"""Training pairs: from a folder of TIFFs or simulated on demand, cut into normalised patches.

A *pair source* returns pair ``i`` as ``(input, target)`` numpy arrays:
``sr`` ``(H, W)`` and ``(2H, 2W)``; ``qpi`` ``(2, H, W)`` and ``(H, W)``.
:func:`make_batch` turns a list of pairs into the network's tensors (random
patches, flips and 90° rotations, normalisation, the ``sr`` residual).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..physics.optics import Optics
from .normalize import Normalization
from .tiff import read_tiff


class PairTask(Protocol):
    """What a pair source asks of its task (:class:`napari_cvdm.tasks.Task` has it all): the shapes of a pair, the
    simulator, and the patches the network learns from."""

    plane_ndim: int

    def pair_shape_error(self, inp: np.ndarray, tgt: np.ndarray) -> str | None: ...

    def default_classes(self, with_images: bool = False) -> list[str]: ...

    def variant_error(self, variant: str | None) -> str | None: ...

    def simulate(
        self,
        cls: str,
        size: int,
        rng: np.random.Generator,
        optics: Any = None,
        images: Any = None,
        level: float | None = None,
        variant: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def normalized_patch(
        self, inp: np.ndarray, tgt: np.ndarray, norm: Normalization, y0: int, x0: int, p: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def collate(self, x: torch.Tensor, y: torch.Tensor, norm: Normalization) -> tuple[torch.Tensor, torch.Tensor]: ...


__all__ = [
    "PairError",
    "paired_tiffs",
    "FolderPairs",
    "SimulatedPairs",
    "ArrayPairs",
    "make_batch",
    "check_pair",
    "PairTask",
]


class PairError(ValueError):
    """Training pairs that cannot be used; the message names the pair and the problem."""


def check_pair(inp: np.ndarray, tgt: np.ndarray, task: PairTask, name: str, min_side: int = 16) -> None:
    """Shapes (as the task defines them), size and finiteness of one pair (one plane)."""
    problem = task.pair_shape_error(inp, tgt)
    if problem:
        raise PairError(f"{name}: {problem}")
    if min(inp.shape[-2:]) < min_side:
        raise PairError(
            f"{name}: the input is {inp.shape[-2]}×{inp.shape[-1]} pixels; patches of {min_side} "
            "pixels need at least that much"
        )
    for what, arr in (("input", inp), ("target", tgt)):
        if not np.isfinite(arr).all():
            raise PairError(f"{name}: the {what} contains NaN or infinite values")


@dataclass
class ArrayPairs:
    """Pairs held in memory (e.g. from napari layers); stacks are split into planes."""

    task: PairTask
    inputs: Sequence[np.ndarray]
    targets: Sequence[np.ndarray]
    names: Sequence[str] | None = None
    min_side: int = 16
    _pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise PairError(f"{len(self.inputs)} inputs but {len(self.targets)} targets")
        if not len(self.inputs):
            raise PairError("no training pairs")
        names = list(self.names) if self.names is not None else [f"pair {i}" for i in range(len(self.inputs))]
        plane_ndim = self.task.plane_ndim
        for inp, tgt, name in zip(self.inputs, self.targets, names):
            inp = np.asarray(inp, dtype=np.float32)
            tgt = np.asarray(tgt, dtype=np.float32)
            if inp.ndim == plane_ndim + 1 and tgt.ndim == 3:  # a stack: (Z, H, W) or (Z, 2, H, W) with (Z, h, w)
                if len(inp) != len(tgt):
                    raise PairError(f"{name}: {len(inp)} input planes but {len(tgt)} target planes")
                planes = list(zip(inp, tgt))
            else:
                planes = [(inp, tgt)]
            for k, (a, b) in enumerate(planes):
                label = name if len(planes) == 1 else f"{name} plane {k}"
                check_pair(a, b, self.task, label, self.min_side)
                self._pairs.append((a, b))

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._pairs[i]


def paired_tiffs(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, input, target)`` paths of ``DIR/inputs/NAME.tif`` + ``DIR/targets/NAME.tif``, sorted by name."""
    folder = Path(folder)
    inputs, targets = folder / "inputs", folder / "targets"
    if not inputs.is_dir() or not targets.is_dir():
        raise PairError(
            f"{folder}: expected the sub-folders inputs/ and targets/ with TIFFs of the same names "
            "(as napari-cvdm simulate writes)"
        )
    in_files = sorted(p for p in inputs.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not in_files:
        raise PairError(f"{inputs}: no .tif files")
    out = []
    for p in in_files:
        t = targets / p.name
        if not t.exists():
            raise PairError(f"{p}: no target with the same name in {targets}")
        out.append((p.name, p, t))
    return out


def FolderPairs(folder: str | Path, task: PairTask, min_side: int = 16) -> ArrayPairs:
    """Pairs from ``DIR/inputs/NAME.tif`` + ``DIR/targets/NAME.tif`` (2-D or stacks), checked up front."""
    files = paired_tiffs(folder)
    return ArrayPairs(
        task,
        [read_tiff(i).data for _, i, _ in files],
        [read_tiff(t).data for _, _, t in files],
        [name for name, _, _ in files],
        min_side,
    )


@dataclass
class SimulatedPairs:
    """``n`` pairs simulated on demand (pair ``i`` from seed ``(seed, i)``, cached), for ``--simulate N``.

    Parameters
    ----------
    task
        The task (or its name): it simulates the pairs.
    n
        Number of distinct pairs.
    size
        Input side in pixels.
    seed
        Seed of the set.
    optics
        The task's optics (default: the bundled model's).
    classes
        Structure classes or phase sources, cycled through (default: the task's training classes).
    images
        Grayscale images for the ``images`` phase source.
    variant, variant_share
        A variant of the task's simulator (:attr:`~napari_cvdm.tasks.base.Task.variants`, e.g. ``aberrated`` for
        sr) that this share of the pairs (drawn per pair) is simulated as.
    """

    task: PairTask
    n: int
    size: int
    seed: int = 0
    optics: Optics | None = None
    classes: Sequence[str] = ()
    images: list[np.ndarray] | None = None
    variant: str | None = None
    variant_share: float = 0.0
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise PairError("--simulate needs at least 1 pair")
        if not self.classes:
            self.classes = self.task.default_classes(with_images=bool(self.images))
        if problem := self.task.variant_error(self.variant):
            raise PairError(f"--variant: {problem}")
        if not 0 <= self.variant_share <= 1:
            raise PairError(f"--variant-share {self.variant_share}: give a share from 0 to 1")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(f"pair {i} of {self.n}")
        if i not in self._cache:
            self._cache[i] = self._simulate(self.classes[i % len(self.classes)], np.random.default_rng([self.seed, i]))
        return self._cache[i]

    def _simulate(self, cls: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One pair of class ``cls`` drawn with ``rng``."""
        return self.task.simulate(cls, self.size, rng, self.optics, self.images, None, self.drawn_variant(rng))

    def drawn_variant(self, rng: np.random.Generator) -> str | None:
        """The variant one pair is simulated as: :attr:`variant` for a :attr:`variant_share` of the pairs, else
        ``None`` (nothing is drawn from ``rng`` without a share, so such sets stay as they were)."""
        if self.variant is None or self.variant_share <= 0:
            return None
        return self.variant if rng.random() < self.variant_share else None


def _augment(arrs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrs:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def make_batch(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    task: PairTask,
    norm: Normalization,
    patch: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised condition and target tensors from random patches, flips and 90° rotations.

    Parameters
    ----------
    pairs
        ``(input, target)`` pairs (one plane each).
    task
        The task: it normalises the patches and builds the condition and what the network learns.
    patch
        Patch side on the input grid (the ``sr`` target patch is twice that).

    Returns
    -------
    x, y
        The network's condition and target, ``(B, C, h, w)`` and ``(B, 1, h, w)`` on the output grid.
    """
    xs, ys = [], []
    for inp, tgt in pairs:
        h, w = inp.shape[-2:]
        p = min(patch, h, w)
        y0, x0 = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        a, b = _augment(list(task.normalized_patch(inp, tgt, norm, y0, x0, p)), rng)
        xs.append(torch.from_numpy(np.asarray(a, np.float32)))
        ys.append(torch.from_numpy(np.asarray(b, np.float32)))
    if len({tuple(x.shape) for x in xs}) > 1:
        raise PairError("pairs smaller than the patch size differ in size; use a smaller --patch-size")
    return task.collate(torch.stack(xs), torch.stack(ys), norm)
