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

import numpy as np
import torch

from ..physics.widefield import WidefieldOptics
from .normalize import Normalization, qpi_base, qpi_condition, qpi_target, sr_affine, sr_condition
from .simulate import QPIOptics, SR_STRUCTURES, simulate_qpi_pair, simulate_sr_pair
from .tiff import read_tiff

__all__ = ["PairError", "paired_tiffs", "FolderPairs", "SimulatedPairs", "ArrayPairs", "make_batch", "check_pair"]


class PairError(ValueError):
    """Training pairs that cannot be used; the message names the pair and the problem."""


def check_pair(inp: np.ndarray, tgt: np.ndarray, task: str, name: str, min_side: int = 16) -> None:
    """Shapes, size and finiteness of one 2-D pair (one plane)."""
    if task == "sr":
        if inp.ndim != 2 or tgt.ndim != 2:
            raise PairError(f"{name}: sr pairs are (H, W) inputs with (2H, 2W) targets; got {inp.shape} and {tgt.shape}")
        if tgt.shape != (2 * inp.shape[0], 2 * inp.shape[1]):
            raise PairError(f"{name}: the target must be twice the input's size: input {inp.shape} needs target "
                            f"{(2 * inp.shape[0], 2 * inp.shape[1])}, got {tgt.shape}")
    else:
        if inp.ndim != 3 or inp.shape[0] != 2 or tgt.shape != inp.shape[1:]:
            raise PairError(f"{name}: qpi pairs are (2, H, W) inputs with (H, W) phase targets; got {inp.shape} "
                            f"and {tgt.shape}")
    if min(inp.shape[-2:]) < min_side:
        raise PairError(f"{name}: the input is {inp.shape[-2]}×{inp.shape[-1]} pixels; patches of {min_side} "
                        "pixels need at least that much")
    for what, arr in (("input", inp), ("target", tgt)):
        if not np.isfinite(arr).all():
            raise PairError(f"{name}: the {what} contains NaN or infinite values")


@dataclass
class ArrayPairs:
    """Pairs held in memory (e.g. from napari layers); stacks are split into planes."""

    task: str
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
        plane_ndim = 2 if self.task == "sr" else 3
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
        raise PairError(f"{folder}: expected the sub-folders inputs/ and targets/ with TIFFs of the same names "
                        "(as napari-cvdm simulate writes)")
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


def FolderPairs(folder: str | Path, task: str, min_side: int = 16) -> ArrayPairs:
    """Pairs from ``DIR/inputs/NAME.tif`` + ``DIR/targets/NAME.tif`` (2-D or stacks), checked up front."""
    files = paired_tiffs(folder)
    return ArrayPairs(task, [read_tiff(i).data for _, i, _ in files], [read_tiff(t).data for _, _, t in files],
                      [name for name, _, _ in files], min_side)


@dataclass
class SimulatedPairs:
    """``n`` pairs simulated on demand (pair ``i`` from seed ``(seed, i)``, cached), for ``--simulate N``.

    Parameters
    ----------
    task
        ``"sr"`` or ``"qpi"``.
    n
        Number of distinct pairs.
    size
        Input side in pixels.
    classes
        ``sr`` structure classes or ``qpi`` sources, cycled through.
    photon_range
        ``sr`` signal range (log-uniform), photons per pixel.
    """

    task: str
    n: int
    size: int
    seed: int = 0
    sr_optics: WidefieldOptics = field(default_factory=WidefieldOptics)
    qpi_optics: QPIOptics = field(default_factory=QPIOptics)
    classes: Sequence[str] = ()
    photon_range: tuple[float, float] = (15.0, 600.0)
    images: list[np.ndarray] | None = None
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise PairError("--simulate needs at least 1 pair")
        if not self.classes:
            self.classes = list(SR_STRUCTURES) if self.task == "sr" else (
                ["cells", "textures"] + (["images"] if self.images else []))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            rng = np.random.default_rng([self.seed, i])
            cls = self.classes[i % len(self.classes)]
            if self.task == "sr":
                lo, hi = np.log(self.photon_range)
                pair = simulate_sr_pair(cls, (self.size, self.size), float(np.exp(rng.uniform(lo, hi))), rng,
                                        self.sr_optics)
            else:
                pair = simulate_qpi_pair(cls, (self.size, self.size), rng, self.qpi_optics, self.images)
            self._cache[i] = (pair.input, pair.target)
        return self._cache[i]


def _augment(arrs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrs:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def make_batch(pairs: Sequence[tuple[np.ndarray, np.ndarray]], task: str, norm: Normalization, patch: int,
               rng: np.random.Generator, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised condition and target tensors from random patches.

    Parameters
    ----------
    pairs
        ``(input, target)`` pairs (one plane each).
    patch
        Patch side on the input grid (the ``sr`` target patch is twice that).

    Returns
    -------
    x, y
        ``sr``: ``(B, 1, 2p, 2p)`` condition (bicubic-upsampled normalised input)
        and residual target; ``qpi``: ``(B, 2, p, p)`` and ``(B, 1, p, p)``.
    """
    xs, ys = [], []
    for inp, tgt in pairs:
        h, w = inp.shape[-2:]
        p = min(patch, h, w)
        y0, x0 = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        if task == "sr":
            offset, scale = sr_affine(inp, norm)
            a = (inp[y0:y0 + p, x0:x0 + p] - offset) / scale
            b = (tgt[2 * y0:2 * (y0 + p), 2 * x0:2 * (x0 + p)] - offset) / scale
        else:  # the condition (with its TIE channel) is computed on the whole image, then cropped
            full = qpi_condition(torch.from_numpy(np.asarray(inp, np.float32))[None], norm)[0].numpy()
            a, b = full[:, y0:y0 + p, x0:x0 + p], tgt[y0:y0 + p, x0:x0 + p]
        if augment:
            a, b = _augment([a, b], rng)
        xs.append(torch.from_numpy(np.asarray(a, np.float32)))
        ys.append(torch.from_numpy(np.asarray(b, np.float32)))
    if len({tuple(x.shape) for x in xs}) > 1:
        raise PairError("pairs smaller than the patch size differ in size; use a smaller --patch-size")
    if task == "sr":
        x = sr_condition(torch.stack(xs)[:, None])
        y = torch.stack(ys)[:, None] - x
    else:
        x = torch.stack(xs)
        y = qpi_target(torch.stack(ys)[:, None], norm) - qpi_base(x, norm)
        y = y - y.mean(dim=(-2, -1), keepdim=True)  # phase is defined up to a constant
    return x, y
