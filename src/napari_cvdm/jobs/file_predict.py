"""One file at a time: read a TIFF, predict, write ``<stem>_mean.tif``, ``<stem>_std.tif`` and
``<stem>_residual.tif`` with the pixel size (the building blocks of :mod:`napari_cvdm.jobs.batch` and
:mod:`napari_cvdm.jobs.distributed_predict`).

Outputs are written to a temporary name and renamed, so an output that exists is complete. A file's seed comes from
the user's seed and the file's name (:func:`file_seed`), never from the rank or the order, so results do not depend
on how the work was split.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..data.microscope_files import read_image, write_ome_zarr
from ..data.tiff import TiffImage, output_axes, write_ome_tiff, write_tiff
from ..diffusion.sampler import ProgressCallback
from ..inference.devices import autocast_dtype, resolve_device
from ..inference.predict import SamplingOptions
from ..inference.reconstructor import Reconstructor
from ..physics.optics import Optics

__all__ = [
    "FileResult",
    "OUTPUT_KEYS",
    "OUTPUT_FORMATS",
    "file_seed",
    "outputs_of",
    "predict_file",
    "predict_files",
    "provenance",
]


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


def file_seed(path: Path, seed: int) -> int:
    """The seed of one file: from the user's seed and the file's name, so that every file gets its own noise (a
    time-lapse's frames do not share their errors) and a file gets the same result however the work is split."""
    return int(
        np.random.SeedSequence([seed, zlib.crc32(Path(path).name.encode())]).generate_state(1, dtype=np.uint64)[0] >> 2
    )


def provenance(model: Reconstructor, options: SamplingOptions, seed: int, optics: Optics | None = None) -> str:
    """How an output was made, as JSON for its TIFF's ``Info`` (Fiji: Image > Show Info): the software, the method
    and the optics it ran at (``optics``: the result's, where they were the image's own; else the method's); for a
    model also the seed, samples, steps, device, precision (bf16 or fp32) and CPU threads — what the same result needs
    (bf16 sums depend on the thread count; fp32 agrees to 10⁻⁵)."""
    record = {
        "software": f"napari-cvdm {__version__}",
        "method": model.label,
        "model": model.name,
        "optics": (optics or model.optics).describe(),
    }
    if model.stochastic:
        device = resolve_device(options.device)
        record |= {
            "seed": seed,
            "samples": options.n_samples,
            "steps": options.steps or model.default_steps,
            "device": str(device),
            "precision": "bf16" if autocast_dtype(device) is not None else "fp32",
            "threads": torch.get_num_threads(),
        }
    return json.dumps(record, ensure_ascii=False)


#: What is written per input: ``<stem>_<key>.tif``.
OUTPUT_KEYS = ("mean", "std", "residual")


#: Output formats: the suffix of each written file.
OUTPUT_FORMATS = {"tiff": ".tif", "ome-tiff": ".ome.tif", "ome-zarr": ".ome.zarr"}


def outputs_of(path: Path, output_dir: Path, fmt: str = "tiff") -> tuple[Path, ...]:
    """The mean, std and residual files of one input (``fmt``: a key of :data:`OUTPUT_FORMATS`)."""
    stem = Path(path).stem
    return tuple(output_dir / f"{stem}_{key}{OUTPUT_FORMATS[fmt]}" for key in OUTPUT_KEYS)


def _write(
    model: Reconstructor,
    path: Path,
    output_dir: Path,
    arrays: dict[str, np.ndarray],
    pixel_um: tuple[float, float] | None,
    axes: str | None = None,
    z_spacing_um: float | None = None,
    info: str | None = None,
    fmt: str = "tiff",
) -> tuple[Path, ...]:
    """Write ``arrays`` (``mean``, ``std`` on the output grid; ``residual`` on the input grid) as float32 TIFFs or
    OME-Zarr (``fmt``), their axes those of the input ``axes`` (:func:`~napari_cvdm.data.tiff.output_axes`: a
    time-lapse stays a time-lapse, channels stay channels) with the Z spacing and ``info`` (:func:`provenance`)."""
    for out in outputs_of(path, output_dir, fmt):  # what a crashed run left under temporary names
        for stale in out.parent.glob(f".{out.name}.*.tmp"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    write = {"tiff": write_tiff, "ome-tiff": write_ome_tiff, "ome-zarr": write_ome_zarr}[fmt]
    written = []
    for key, out in zip(OUTPUT_KEYS, outputs_of(path, output_dir, fmt)):
        arr = arrays[key]
        px = pixel_um if key == "residual" else model.task.output_pixel_size(pixel_um)
        ax = output_axes(axes, np.ndim(arr))
        dz = z_spacing_um if ax is not None and "Z" in ax and "Z" in (axes or "") else None
        written.append(write(out, arr, pixel_size_um=px, axes=ax, z_spacing_um=dz, info=info))
    return tuple(written)


def predict_file(
    model: Reconstructor,
    path: Path,
    options: SamplingOptions,
    output_dir: Path,
    callback: ProgressCallback | None = None,
    read: Callable[[Path], TiffImage] = read_image,
    fmt: str = "tiff",
) -> FileResult:
    """Reconstruct one file (read by ``read``; seed: :func:`file_seed`) and write its mean, std and residual
    (``fmt``: a key of :data:`OUTPUT_FORMATS`)."""
    img = read(path)
    t0, seed = time.perf_counter(), file_seed(path, options.seed)
    given = model.given(img.data, img.pixel_size_um, img.z_spacing_um)  # checked once; its optics with the result
    pred = model.predict_with(given, dataclasses.replace(options, seed=seed), callback)
    arrays = {"mean": pred.mean, "std": pred.std, "residual": pred.residual}
    made = provenance(model, options, seed, pred.optics)
    outputs = _write(model, path, output_dir, arrays, img.pixel_size_um, img.axes, img.z_spacing_um, made, fmt)
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
    model: Reconstructor,
    paths: Sequence[Path],
    options: SamplingOptions,
    output_dir: Path,
    callback: Callable[[Path], ProgressCallback | None] | None = None,
    raise_errors: bool = False,
    read: Callable[[Path], TiffImage] = read_image,
    fmt: str = "tiff",
) -> list[FileResult]:
    """Reconstruct every file in this process; a file that cannot be read or reconstructed gets its error and the
    rest go on (``callback(path)`` gives the sampling progress callback of that file)."""
    return [
        _guarded(
            p,
            lambda p=p: predict_file(model, Path(p), options, output_dir, callback(p) if callback else None, read, fmt),
            raise_errors,
        )
        for p in paths
    ]
