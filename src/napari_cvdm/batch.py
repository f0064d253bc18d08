"""Reconstruct TIFF files: read, predict, write ``<stem>_mean.tif`` and ``<stem>_std.tif`` with pixel sizes.

The command line's ``predict`` is this function; a file that fails is reported and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .data.tiff import read_tiff, write_tiff
from .diffusion.sampler import ProgressCallback
from .models import CVDMModel
from .predict import SamplingOptions

__all__ = ["PredictRequest", "FileResult", "predict_file", "predict_files"]


@dataclass(frozen=True)
class PredictRequest:
    """Reconstruct TIFFs: writes DIR/<stem>_mean.tif and DIR/<stem>_std.tif (float32, with the pixel size).

    Parameters
    ----------
    inputs
        TIFF files: sr (H, W) or stacks; qpi (2, H, W) ordered (-dz, +dz), divided by the background.
    model
        sr, qpi or a .safetensors model file.
    output_dir
        Where DIR/<stem>_mean.tif and DIR/<stem>_std.tif go.
    compile
        Compile the denoiser with torch.compile (pays off on GPUs for long runs; slower on CPUs).
    """

    inputs: list[Path] = field(metadata={"cli": "inputs"})
    model: str = field(metadata={"cli": "--model"})
    output_dir: Path = field(metadata={"cli": "--output-dir"})
    compile: bool = field(default=False, metadata={"cli": "--compile"})


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file: the outputs written, or the error."""

    path: Path
    outputs: tuple[Path, ...] = ()
    shape: tuple[int, ...] = ()
    seconds: float = 0.0
    error: str | None = None


def predict_file(
    model: CVDMModel, path: Path, options: SamplingOptions, output_dir: Path, callback: ProgressCallback | None = None
) -> FileResult:
    """Reconstruct one TIFF and write its mean and std (float32; the output's pixel size in the metadata)."""
    img = read_tiff(path)
    t0 = time.perf_counter()
    pred = model.predict_with(img.data, options, callback)
    px = model.task.output_pixel_size(img.pixel_size_um)
    axes = "YX" if pred.mean.ndim == 2 else "ZYX"
    outputs = tuple(
        write_tiff(output_dir / f"{path.stem}_{kind}.tif", arr, pixel_size_um=px, axes=axes)
        for kind, arr in (("mean", pred.mean), ("std", pred.std))
    )
    return FileResult(path, outputs, pred.mean.shape, time.perf_counter() - t0)


def predict_files(
    model: CVDMModel,
    paths: Sequence[Path],
    options: SamplingOptions,
    output_dir: Path,
    callback: Callable[[Path], ProgressCallback | None] | None = None,
    raise_errors: bool = False,
) -> list[FileResult]:
    """Reconstruct every file; a file that cannot be read or reconstructed gets its error and the rest go on.

    Parameters
    ----------
    callback
        ``callback(path)`` gives the sampling progress callback of that file (or ``None``).
    raise_errors
        Raise the first error instead (``--debug``).
    """
    results = []
    for path in paths:
        try:
            results.append(predict_file(model, Path(path), options, output_dir, callback(path) if callback else None))
        except (ValueError, OSError) as err:
            if raise_errors:
                raise
            results.append(FileResult(Path(path), error=str(err)))
    return results
