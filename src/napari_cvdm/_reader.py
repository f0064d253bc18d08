"""napari reader contribution: TIFF files with pixel size and axes.

No napari import: the reader returns plain layer-data tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data.tiff import read_tiff, scale_for_axes

__all__ = ["napari_get_reader", "read_layers"]

_SUFFIXES = (".tif", ".tiff")
_AXIS_LABELS = {"Y": "y", "X": "x", "Z": "z", "T": "t", "C": "c"}


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`read_layers` for TIFF paths, ``None`` for anything else."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(str(p).lower().endswith(_SUFFIXES) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read one or several TIFF files as napari image layers.

    Returns
    -------
    list of (data, kwargs, "image")
        ``kwargs`` carries ``name``, ``scale`` (µm per pixel for Y/X/Z),
        ``axis_labels``, ``units``, ``rgb`` and ``metadata`` with
        ``pixel_size_um`` (``(y, x)`` or ``None``) and ``axes``.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = []
    for p in paths:
        img = read_tiff(p)
        data, axes = img.data, img.axes
        rgb = axes.endswith("S") and data.shape[-1] in (3, 4)
        if rgb:
            axes = axes[:-1]
        elif "S" in axes:  # samples that are not colours: show them as channels
            data = np.moveaxis(data, axes.index("S"), 0)
            axes = "C" + axes.replace("S", "")
        kwargs = {
            "name": Path(p).stem,
            "scale": scale_for_axes(img, axes),
            "axis_labels": tuple(_AXIS_LABELS.get(a, a.lower()) for a in axes),
            "units": tuple(
                "µm" if (a in "YX" and img.pixel_size_um) or (a == "Z" and img.z_spacing_um) else "pixel" for a in axes
            ),
            "rgb": rgb,
            "metadata": {
                "pixel_size_um": img.pixel_size_um,
                "z_spacing_um": img.z_spacing_um,
                "axes": img.axes,
                "source": str(img.path),
            },
        }
        layers.append((data, kwargs, "image"))
    return layers
