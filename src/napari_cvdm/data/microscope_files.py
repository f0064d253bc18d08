"""Microscope files as images with their axes and pixel size: TIFF and OME-TIFF through tifffile (always), CZI, ND2,
LIF and OME-Zarr through bioio and its reader plugins (optional extras: the error names the one to install), and
one channel chosen from a multi-channel image."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

from .tiff import TiffImage, TiffReadError, checked_axes, pixel_yx, read_tiff

__all__ = [
    "read_image",
    "select_channel",
    "with_axes",
    "BIOIO_FORMATS",
    "IMAGE_SUFFIXES",
    "TIFF_SUFFIXES",
    "is_image_path",
    "write_ome_zarr",
]

TIFF_SUFFIXES = (".tif", ".tiff")

#: Suffixes read through bioio: ``suffix → (reader plugin module, napari-cvdm extra that installs it)``.
BIOIO_FORMATS = {
    ".czi": ("bioio_czi", "czi"),
    ".nd2": ("bioio_nd2", "nd2"),
    ".lif": ("bioio_lif", "lif"),
    ".zarr": ("bioio_ome_zarr", "ome-zarr"),
}

#: Every suffix ``predict`` takes (a folder's files with these are its inputs).
IMAGE_SUFFIXES = TIFF_SUFFIXES + tuple(BIOIO_FORMATS)


def is_image_path(path: Path) -> bool:
    """Whether ``path`` names an image ``predict`` reads (an OME-Zarr is a folder ending in ``.zarr``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or path.suffix.lower() == ".zarr")


def _read_bioio(path: Path) -> TiffImage:
    """An image through bioio: its TCZYX data with the axes of length 1 dropped (Y and X kept), the pixel size and
    Z spacing in µm."""
    module, extra = BIOIO_FORMATS[path.suffix.lower()]
    if not path.exists():
        raise TiffReadError(f"{path}: file not found")
    if importlib.util.find_spec("bioio") is None or importlib.util.find_spec(module) is None:
        raise TiffReadError(
            f'{path}: reading {path.suffix} files needs bioio and its reader: pip install "napari-cvdm[{extra}]" '
            "(or convert the file to TIFF in Fiji)"
        )
    from bioio import BioImage

    try:
        image = BioImage(path)
        data, order = np.asarray(image.data), image.dims.order
        sizes = image.physical_pixel_sizes
    except Exception as err:  # bioio and its plugins raise many types for bad files
        raise TiffReadError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    keep = [i for i, a in enumerate(order) if data.shape[i] > 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(order[i] for i in keep)
    pixel = (float(sizes.Y), float(sizes.X)) if sizes.Y and sizes.X else None
    z = float(sizes.Z) if sizes.Z and "Z" in axes else None
    return TiffImage(data, axes, pixel, z, path)


def select_channel(image: TiffImage, channel: int) -> TiffImage:
    """The image with one channel (index from 0) of its ``C`` axis.

    Raises
    ------
    TiffReadError
        The image has no channel axis, or not that many channels.
    """
    if "C" not in image.axes:
        raise TiffReadError(f"{image.path}: --channel {channel}, but the image has no channel axis ({image.axes})")
    axis = image.axes.index("C")
    n = image.data.shape[axis]
    if not 0 <= channel < n:
        raise TiffReadError(f"{image.path}: --channel {channel}, but the image has {n} channels (0 to {n - 1})")
    return dataclasses.replace(image, data=np.take(image.data, channel, axis=axis), axes=image.axes.replace("C", ""))


def with_axes(image: TiffImage, axes: str) -> TiffImage:
    """The image with its axes named by the user (one letter per dimension, from ``TZCYX``, ending in ``YX``): for
    files that do not say (a time-lapse saved as a plain stack is read as Z).

    Raises
    ------
    TiffReadError
        Letters that do not fit the image's dimensions.
    """
    axes = axes.upper()
    ok = (
        len(axes) == image.data.ndim
        and axes.endswith("YX")
        and set(axes) <= set("TZCYX")
        and len(set(axes)) == len(axes)
    )
    if not ok:
        raise TiffReadError(
            f"{image.path}: --axes {axes} does not fit an image of shape {image.data.shape} (file axes "
            f"{image.axes}): give one letter per dimension from T, Z, C, Y, X, ending in YX, e.g. TYX"
        )
    return dataclasses.replace(image, axes=axes, z_spacing_um=image.z_spacing_um if "Z" in axes else None)


def read_image(path: str | Path, channel: int | None = None, axes: str | None = None) -> TiffImage:
    """A microscope file (:data:`IMAGE_SUFFIXES`) with its axes (or ``axes``, :func:`with_axes`) and pixel size,
    one channel of it when ``channel`` is given (:func:`select_channel`).

    Raises
    ------
    TiffReadError
        Missing, unreadable, or needing an optional reader that is not installed (the message names the extra).
    """
    path = Path(path)
    image = _read_bioio(path) if path.suffix.lower() in BIOIO_FORMATS else read_tiff(path)
    image = image if axes is None else with_axes(image, axes)
    return image if channel is None else select_channel(image, channel)


_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def write_ome_zarr(
    path: str | Path,
    data: np.ndarray,
    axes: str | None = None,
    pixel_size_um: tuple[float, float] | None = None,
    z_spacing_um: float | None = None,
    info: str | None = None,
) -> Path:
    """Write an image as OME-Zarr (through bioio's writer: the ``ome-zarr`` extra) with its axes, pixel size, Z
    spacing and ``info`` (kept in the group's attributes as ``napari_cvdm``); written under a temporary name and
    renamed, so that a folder that exists is complete.

    Parameters
    ----------
    data
        ``(..., H, W)`` float32 (float64 is stored as float32).
    axes
        Letters from ``TZCYX`` (default: ``YX``, ``ZYX``, ``TZYX`` by the dimensions).
    """
    import os
    import shutil

    if importlib.util.find_spec("bioio_ome_zarr") is None:
        raise ValueError('writing OME-Zarr needs bioio-ome-zarr: pip install "napari-cvdm[ome-zarr]"')
    from bioio_ome_zarr.writers import OMEZarrWriter

    path, arr = Path(path), np.asarray(data, np.float32)
    axes = checked_axes(arr.shape, axes)
    py, px = pixel_yx(pixel_size_um) if pixel_size_um is not None else (1.0, 1.0)
    sizes = {"Y": py, "X": px, "Z": z_spacing_um or 1.0}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = OMEZarrWriter(
        str(tmp),
        level_shapes=arr.shape,
        dtype=arr.dtype,
        axes_names=[a.lower() for a in axes],
        axes_types=[_AXIS_TYPES[a] for a in axes],
        axes_units=["micrometer" if a in sizes else None for a in axes],
        physical_pixel_size=[float(sizes.get(a, 1.0)) for a in axes],
        attributes={"napari_cvdm": info} if info else None,
    )
    writer.write_full_volume(arr)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path
