"""Reconstruct TIFF files: read, predict, write ``<stem>_mean.tif``, ``<stem>_std.tif`` and ``<stem>_residual.tif``
with pixel sizes.

The command line's ``predict`` is :func:`predict_request`. It scales out the ways clusters already offer:

* one process: every file in turn;
* ``torchrun --nproc_per_node N -m napari_cvdm predict ...``: the files (and the planes of stacks) are dealt out
  to the ranks, one device each; rank 0 assembles the stacks and prints the summary;
* a job array: ``--shard K/N`` takes every N-th file from the K-th (the scheduler's array index goes straight in).

``--skip-existing`` continues after a crash: outputs are written to a temporary name and renamed, so an output that
exists is complete. A file's seed comes from the user's seed and the file's name (:func:`file_seed`), never from the
rank or the order, so results do not depend on how the work was split.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.tiff import read_tiff, write_tiff
from .diffusion.sampler import ProgressCallback
from .distributed import DistributedContext
from .models import CVDMModel
from .predict import SamplingOptions, check_pixel_size

__all__ = [
    "PredictRequest",
    "FileResult",
    "file_seed",
    "parse_shard",
    "outputs_of",
    "predict_file",
    "predict_files",
    "predict_request",
]


@dataclass(frozen=True)
class PredictRequest:
    """Reconstruct TIFFs: writes DIR/<stem>_mean.tif, _std.tif and _residual.tif (float32, with the pixel size;
    the residual is the mean pushed back through the optics minus the input, in noise units, on the input grid).

    Parameters
    ----------
    inputs
        TIFF files: sr (H, W) or stacks; qpi (2, H, W) ordered (-dz, +dz), divided by the background.
    model
        sr, qpi or a .safetensors model file; or a classical method to compare with: tie, iterative or
        flat-background (qpi), bicubic or richardson-lucy (sr), whose optics the optics options set (--samples
        is then ignored).
    output_dir
        Where DIR/<stem>_mean.tif, _std.tif and _residual.tif go.
    compile
        Compile the denoiser with torch.compile (pays off on GPUs for long runs; slower on CPUs).
    shard
        K/N: only every N-th input from the K-th (K from 0), e.g. a job array's index.
    skip_existing
        Skip inputs whose outputs are already complete (to continue after a crash).
    """

    inputs: list[Path] = field(metadata={"cli": "inputs"})
    model: str = field(metadata={"cli": "--model"})
    output_dir: Path = field(metadata={"cli": "--output-dir"})
    compile: bool = field(default=False, metadata={"cli": "--compile"})
    shard: str | None = field(default=None, metadata={"cli": "--shard"})
    skip_existing: bool = field(default=False, metadata={"cli": "--skip-existing"})

    def __post_init__(self) -> None:
        if self.shard is not None:
            parse_shard(self.shard)


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file: the outputs written, or the error (``skipped``: already complete)."""

    path: Path
    outputs: tuple[Path, ...] = ()
    shape: tuple[int, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False
    warnings: tuple[str, ...] = ()
    residual_rms: float | None = None


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with ``0 ≤ K < N`` (``ValueError`` otherwise)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text}: expected K/N, e.g. 0/4 for the first of four shards") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard {text}: K must be in 0..N-1 (shards are counted from 0)")
    return k, n


def file_seed(path: Path, seed: int) -> int:
    """The seed of one file: from the user's seed and the file's name, so that every file gets its own noise (a
    time-lapse's frames do not share their errors) and a file gets the same result however the work is split."""
    return int(
        np.random.SeedSequence([seed, zlib.crc32(Path(path).name.encode())]).generate_state(1, dtype=np.uint64)[0] >> 2
    )


#: What is written per input: ``<stem>_<key>.tif``.
OUTPUT_KEYS = ("mean", "std", "residual")


def outputs_of(path: Path, output_dir: Path) -> tuple[Path, ...]:
    """The mean, std and residual files of one input."""
    stem = Path(path).stem
    return tuple(output_dir / f"{stem}_{key}.tif" for key in OUTPUT_KEYS)


def _write(
    model: CVDMModel, path: Path, output_dir: Path, arrays: dict[str, np.ndarray], pixel_um: tuple[float, float] | None
) -> tuple[Path, ...]:
    """Write ``arrays`` (``mean``, ``std`` on the output grid; ``residual`` on the input grid) as float32 TIFFs."""
    for out in outputs_of(path, output_dir):  # what a crashed run left under temporary names
        for stale in out.parent.glob(f".{out.name}.*.tmp"):
            stale.unlink()
    written = []
    for key, out in zip(OUTPUT_KEYS, outputs_of(path, output_dir)):
        arr = arrays[key]
        px = pixel_um if key == "residual" else model.task.output_pixel_size(pixel_um)
        written.append(write_tiff(out, arr, pixel_size_um=px))  # axes from the dimensions: YX, ZYX, TZYX
    return tuple(written)


def predict_file(
    model: CVDMModel, path: Path, options: SamplingOptions, output_dir: Path, callback: ProgressCallback | None = None
) -> FileResult:
    """Reconstruct one TIFF (seed: :func:`file_seed`) and write its mean and std."""
    img = read_tiff(path)
    t0 = time.perf_counter()
    pred = model.predict_with(img.data, dataclasses.replace(options, seed=file_seed(path, options.seed)), callback)
    pred = check_pixel_size(pred, model.task, model.optics, img.pixel_size_um)
    arrays = {"mean": pred.mean, "std": pred.std, "residual": pred.residual}
    outputs = _write(model, path, output_dir, arrays, img.pixel_size_um)
    seconds = time.perf_counter() - t0
    return FileResult(
        path, outputs, pred.mean.shape, seconds, warnings=tuple(pred.warnings), residual_rms=pred.residual_rms
    )


def _guarded(path: Path, work: Callable[[], FileResult], raise_errors: bool) -> FileResult:
    try:
        return work()
    except (ValueError, OSError) as err:
        if raise_errors:
            raise
        return FileResult(Path(path), error=str(err))


def predict_files(
    model: CVDMModel,
    paths: Sequence[Path],
    options: SamplingOptions,
    output_dir: Path,
    callback: Callable[[Path], ProgressCallback | None] | None = None,
    raise_errors: bool = False,
) -> list[FileResult]:
    """Reconstruct every file in this process; a file that cannot be read or reconstructed gets its error and the
    rest go on (``callback(path)`` gives the sampling progress callback of that file)."""
    return [
        _guarded(
            p,
            lambda p=p: predict_file(model, Path(p), options, output_dir, callback(p) if callback else None),
            raise_errors,
        )
        for p in paths
    ]


def _selected(request: PredictRequest) -> tuple[list[Path], list[FileResult]]:
    """The inputs of this shard, less those whose outputs are complete (``--skip-existing``)."""
    paths = [Path(p) for p in request.inputs]
    if request.shard is not None:
        k, n = parse_shard(request.shard)
        paths = paths[k::n]
    done = [p for p in paths if request.skip_existing and all(o.exists() for o in outputs_of(p, request.output_dir))]
    return [p for p in paths if p not in done], [
        FileResult(p, outputs_of(p, request.output_dir), skipped=True) for p in done
    ]


def predict_request(
    model: CVDMModel,
    request: PredictRequest,
    options: SamplingOptions,
    dist: DistributedContext | None = None,
    callback: Callable[[Path], ProgressCallback | None] | None = None,
    raise_errors: bool = False,
) -> list[FileResult]:
    """Reconstruct the request's files in this process, or this rank's share of them under torchrun (planes of
    stacks dealt out one by one, stacks assembled by rank 0). Returns every file's result on rank 0 (this rank's
    elsewhere)."""
    paths, skipped = _selected(request)
    if dist is None or dist.world_size == 1:
        return skipped + predict_files(model, paths, options, request.output_dir, callback, raise_errors)
    from .distributed_predict import predict_distributed

    return skipped + predict_distributed(model, paths, options, request.output_dir, dist, raise_errors)
