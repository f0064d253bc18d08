"""Reconstruct TIFF files: read, predict, write ``<stem>_mean.tif``, ``<stem>_std.tif`` and ``<stem>_residual.tif``
with pixel sizes (each file by :mod:`napari_cvdm.jobs.file_predict`).

The command line's ``predict`` is :func:`predict_request`. It scales out the ways clusters already offer:

* one process: every file in turn;
* ``torchrun --nproc_per_node N -m napari_cvdm predict ...``: the files (and the planes of stacks) are dealt out
  to the ranks, one device each; rank 0 assembles the stacks and prints the summary;
* a job array: ``--shard K/N`` takes every N-th file from the K-th (the scheduler's array index goes straight in).

``--skip-existing`` continues after a crash: an output that exists is complete.
"""

from __future__ import annotations

import functools
import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.microscope_files import is_image_path, read_image
from ..diffusion.sampler import ProgressCallback
from ..inference.predict import SamplingOptions
from ..inference.reconstructor import Reconstructor
from ..training.distributed import DistributedContext
from .distributed_predict import predict_distributed
from .file_predict import FileResult, file_seed, outputs_of, predict_file, predict_files

__all__ = [
    "expand_inputs",
    "check_outputs_apart",
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
    """Reconstruct microscope files: writes DIR/<stem>_mean.tif, _std.tif and _residual.tif (float32, with the pixel
    size and axes; the residual is the mean pushed back through the optics minus the input, in noise units, on the
    input grid).

    Parameters
    ----------
    inputs
        TIFF files (CZI, ND2, LIF, OME-Zarr with the extra of that name), folders (their images) or quoted globs
        ("data/*.tif"): sr (H, W) or stacks; qpi (2, H, W)
        ordered (-dz, +dz) or a through-focus stack (N, H, W) from -dz to +dz (its outer pair is used), divided
        by the background (or see --flat-field).
    model
        sr, qpi or a .safetensors model file (the optics options run it at your optics by physics similarity;
        --pixel-size alone: the sr cut-off read off each image; what the options leave open, the pixel size and for
        qpi the plane spacing, from each file where it states them); or a classical method to compare with: tie,
        iterative or flat-background (qpi), bicubic or richardson-lucy (sr), at the optics options given
        (--samples is then ignored).
    output_dir
        Where DIR/<stem>_mean.tif, _std.tif and _residual.tif go (default: cvdm-output in the current folder).
    compile
        Compile the denoiser with torch.compile (pays off on GPUs for long runs; slower on CPUs).
    shard
        K/N: only every N-th input from the K-th (K from 0), e.g. a job array's index.
    skip_existing
        Skip inputs whose outputs are already complete (to continue after a crash).
    channel
        The channel (from 0) of a multi-channel image to reconstruct (default: every channel, each as a plane).
    axes
        The axes of the input files, one letter per dimension from TZCYX ending in YX (e.g. TYX for a time-lapse
        saved without metadata; default: what the file says, a plain stack is Z).
    output_format
        tiff (ImageJ TIFFs that Fiji and napari open with their axes and scale), ome-tiff (<stem>_mean.ome.tif, OME
        metadata) or ome-zarr (<stem>_mean.ome.zarr; needs the ome-zarr extra).
    flat_field
        qpi: a TIFF of the empty field (same exposure; one plane or one per plane) that raw camera planes are
        divided by, or "estimate" to fit a smooth illumination to the planes (default: the planes are already
        divided by the background).
    """

    inputs: list[Path] = field(metadata={"cli": "inputs"})
    model: str = field(metadata={"cli": "--model"})
    output_dir: Path = field(default=Path("cvdm-output"), metadata={"cli": "--output-dir"})
    compile: bool = field(default=False, metadata={"cli": "--compile"})
    shard: str | None = field(default=None, metadata={"cli": "--shard"})
    skip_existing: bool = field(default=False, metadata={"cli": "--skip-existing"})
    flat_field: str | None = field(default=None, metadata={"cli": "--flat-field"})
    channel: int | None = field(default=None, metadata={"cli": "--channel", "parse": int})
    axes: str | None = field(default=None, metadata={"cli": "--axes"})
    output_format: str = field(
        default="tiff", metadata={"cli": "--output-format", "choices": ("tiff", "ome-tiff", "ome-zarr")}
    )

    def __post_init__(self) -> None:
        if self.shard is not None:
            parse_shard(self.shard)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with ``0 ≤ K < N`` (``ValueError`` otherwise)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text}: expected K/N, e.g. 0/4 for the first of four shards") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard {text}: K must be in 0..N-1 (shards are counted from 0)")
    return k, n


def expand_inputs(inputs: Sequence[str | Path], output_dir: Path | None = None) -> list[Path]:
    """Files, folders (the TIFFs in them, sorted) and globs (``data/*.tif``, ``**`` for sub-folders), in the order
    given, each file once; a folder's or glob's files inside ``output_dir`` (earlier outputs) are left out.

    Raises
    ------
    ValueError
        A folder without TIFFs, or a pattern that matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and not is_image_path(path):
            found = sorted(p for p in path.iterdir() if is_image_path(p))
            if not found:
                raise ValueError(f"{path}: a folder without images (.tif, .czi, .nd2, .lif, .zarr)")
        elif not path.exists() and any(c in str(item) for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"{item}: no file matches this pattern")
        else:
            found = [path]
        if output_dir is not None and (path.is_dir() or found != [path]):
            found = [p for p in found if p.resolve().parent != Path(output_dir).resolve()]
        out += [p for p in found if p not in out]
    return out


def check_outputs_apart(paths: Sequence[Path], output_dir: Path, fmt: str = "tiff") -> None:
    """Refuse inputs that would write the same outputs (the same name in different folders).

    Raises
    ------
    ValueError
        Naming both inputs and the output they share.
    """
    seen: dict[Path, Path] = {}
    for path in paths:
        mean = outputs_of(path, output_dir, fmt)[0]
        if mean in seen and seen[mean].resolve() != path.resolve():
            raise ValueError(
                f"{seen[mean]} and {path} would both write {mean} (and its _std and _residual): rename one, or "
                "run the folders with different --output-dir"
            )
        seen[mean] = path


def _selected(request: PredictRequest) -> tuple[list[Path], list[FileResult]]:
    """The inputs of this shard, less those whose outputs are complete (``--skip-existing``)."""
    paths = expand_inputs(request.inputs, request.output_dir)
    check_outputs_apart(paths, request.output_dir, request.output_format)
    if request.shard is not None:
        k, n = parse_shard(request.shard)
        paths = paths[k::n]
    fmt, out = request.output_format, request.output_dir
    done = [p for p in paths if request.skip_existing and all(o.exists() for o in outputs_of(p, out, fmt))]
    return [p for p in paths if p not in done], [
        FileResult(p, outputs_of(p, request.output_dir, fmt), skipped=True) for p in done
    ]


def predict_request(
    model: Reconstructor,
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
    read = functools.partial(read_image, channel=request.channel, axes=request.axes)
    fmt = request.output_format
    if dist is None or dist.world_size == 1:
        return skipped + predict_files(model, paths, options, request.output_dir, callback, raise_errors, read, fmt)
    return skipped + predict_distributed(
        model, paths, options, request.output_dir, dist, raise_errors, read, request.channel, request.axes, fmt
    )
