"""``predict`` under torchrun: the files, and the planes of stacks, dealt out to the ranks.

Work units are whole files, or single planes of stacks (so that one long time-lapse keeps every GPU busy). A rank
writes whole files itself; a plane goes to a part file under ``DIR/.cvdm-parts`` and rank 0 assembles each stack
once all ranks are done, then removes the parts. Plane ``p`` of a file is sampled with the seed the one-process run
gives it (``file_seed + p``), so the outputs equal the one-process outputs bit for bit on the same device type.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data._files import atomic_write
from ..data.microscope_files import read_image
from ..data.tiff import TiffImage
from ..inference.devices import resolve_device
from ..inference.predict import SamplingOptions
from ..inference.reconstructor import Reconstructor
from ..training.distributed import DistributedContext, rank_device
from .file_predict import FileResult, _guarded, _write, file_seed, predict_file, provenance

__all__ = ["PARTS", "work_units", "predict_distributed"]

#: Folder (inside the output folder) for the planes of stacks until rank 0 assembles them.
PARTS = ".cvdm-parts"


def _planes(path: Path, plane_ndim: int, channel: int | None = None, axes: str | None = None) -> int:
    """Planes of a TIFF stack, its channel axis (of the file, or of ``axes`` the user gave) dropped when one
    ``channel`` is taken (1 for a single image, for other formats, or for a file that cannot be read: its
    whole-file unit reports the error)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape, axes = list(tif.series[0].shape), axes or tif.series[0].axes
    except Exception:  # noqa: BLE001 - the whole-file unit reads it again and reports the problem in words
        return 1
    if channel is not None and "C" in axes:
        del shape[axes.index("C")]
    return int(shape[0]) if len(shape) == plane_ndim + 1 and shape[0] > 1 else 1


def work_units(
    paths: list[Path], plane_ndim: int, channel: int | None = None, axes: str | None = None
) -> list[tuple[Path, int | None]]:
    """``(path, None)`` for a single image, ``(path, p)`` for each plane of a stack, in input order."""
    units: list[tuple[Path, int | None]] = []
    for path in paths:
        n = _planes(path, plane_ndim, channel, axes)
        units += [(path, None)] if n == 1 else [(path, p) for p in range(n)]
    return units


def _part(output_dir: Path, path: Path, plane: int) -> Path:
    return output_dir / PARTS / f"{path.stem}.{plane}.npz"


def _predict_plane(
    model: Reconstructor, image: TiffImage, path: Path, plane: int, options: SamplingOptions, output_dir: Path
) -> FileResult:
    given = model.given(image.data[plane], image.pixel_size_um, image.z_spacing_um)
    pred = model.predict_with(given, dataclasses.replace(options, seed=file_seed(path, options.seed) + plane))
    pixel = np.asarray(image.pixel_size_um if image.pixel_size_um is not None else (np.nan, np.nan))

    def save(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                mean=pred.mean,
                std=pred.std,
                residual=pred.residual,
                pixel_size_um=pixel,
                axes=np.asarray(image.axes),
                info=np.asarray(provenance(model, options, file_seed(path, options.seed), pred.optics)),
                z_spacing_um=np.float64(np.nan if image.z_spacing_um is None else image.z_spacing_um),
                warnings=np.asarray(pred.warnings, dtype=str),
                residual_rms=np.float64(pred.residual_rms),
            )

    atomic_write(_part(output_dir, path, plane), save)
    return FileResult(path, shape=pred.mean.shape)


def _assemble(model: Reconstructor, path: Path, n: int, output_dir: Path, fmt: str = "tiff") -> FileResult:
    """Rank 0: the stack of ``path`` from its parts, written as the one-process run writes it."""
    parts = [np.load(_part(output_dir, path, p)) for p in range(n)]
    arrays = {key: np.stack([q[key] for q in parts]) for key in ("mean", "std", "residual")}
    pixel = parts[0]["pixel_size_um"]  # recorded by the rank that read the file: no second read of the stack
    dz = float(parts[0]["z_spacing_um"])
    outputs = _write(
        model,
        path,
        output_dir,
        arrays,
        None if np.isnan(pixel).any() else tuple(map(float, pixel)),
        str(parts[0]["axes"]),
        None if np.isnan(dz) else dz,
        str(parts[0]["info"]),
        fmt,
    )
    remarks = list(dict.fromkeys(str(w) for q in parts for w in q["warnings"]))  # as one process merges a stack's
    rms = max(float(q["residual_rms"]) for q in parts)
    for p in range(n):
        _part(output_dir, path, p).unlink()
    return FileResult(path, outputs, arrays["mean"].shape, warnings=tuple(remarks), residual_rms=rms)


def predict_distributed(
    model: Reconstructor,
    paths: list[Path],
    options: SamplingOptions,
    output_dir: Path,
    dist: DistributedContext,
    raise_errors: bool = False,
    read: Callable[[Path], TiffImage] = read_image,
    channel: int | None = None,
    axes: str | None = None,
    fmt: str = "tiff",
) -> list[FileResult]:
    """This rank's share of the work; rank 0 gathers every result, assembles the stacks and returns all results
    in input order (the other ranks return theirs). ``read`` reads a file (with the ``channel`` it takes and the
    ``axes`` the user named, if any); outputs are written in ``fmt``."""
    import torch.distributed as tdist

    options = dataclasses.replace(options, device=str(rank_device(resolve_device(options.device), dist)))
    units = work_units(paths, model.task.plane_ndim, channel, axes)
    read_files: dict[Path, TiffImage] = {}  # a rank's planes of one stack come one after another: read it once

    def plane_unit(path: Path, plane: int) -> FileResult:
        if path not in read_files:
            read_files.clear()
            read_files[path] = read(path)
        return _predict_plane(model, read_files[path], path, plane, options, output_dir)

    mine = [
        _guarded(
            path,
            lambda path=path, plane=plane: (
                predict_file(model, path, options, output_dir, None, read, fmt)
                if plane is None
                else plane_unit(path, plane)
            ),
            raise_errors,
        )
        for path, plane in units[dist.rank :: dist.world_size]
    ]
    gathered: list[list[FileResult]] = [[] for _ in range(dist.world_size)]
    tdist.all_gather_object(gathered, [dataclasses.asdict(r) for r in mine])
    if not dist.is_main:
        return mine
    results: dict[Path, FileResult] = {}
    for r in (FileResult(**d) for rank in gathered for d in rank):
        if r.error or r.path not in results:
            results[r.path] = r
    planes = Counter(p for p, plane in units if plane is not None)
    for path in paths:
        n = planes[path]
        if n and not results[path].error:
            results[path] = _guarded(
                path, lambda path=path, n=n: _assemble(model, path, n, output_dir, fmt), raise_errors
            )
    parts = output_dir / PARTS
    if parts.is_dir() and not any(parts.iterdir()):
        parts.rmdir()
    return [results[p] for p in paths]
