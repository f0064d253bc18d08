"""napari writer contribution: an image layer to an ImageJ TIFF with its pixel size (no napari import)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data.tiff import um_per_unit, write_tiff

__all__ = ["write_image", "write_layers", "pixel_size_from_layer"]


def pixel_size_from_layer(meta: dict[str, Any]) -> tuple[tuple[float, float] | None, float | None]:
    """``((y, x) pixel size in µm or None, z spacing in µm or None)`` from a layer's ``scale`` and ``units``.

    A layer whose units are pixels (napari's default) keeps its scale as µm unless every scale is 1
    (no calibration), because microscopy layers are commonly scaled in µm without naming the unit.
    """
    scale = [float(v) for v in meta.get("scale") or ()]
    if len(scale) < 2:
        return None, None
    units = list(meta.get("units") or ())
    factors = [um_per_unit(u) for u in units] if len(units) == len(scale) else [None] * len(scale)
    if all(f is None for f in factors):
        if all(v == 1.0 for v in scale[-2:]):
            return None, None
        factors = [1.0] * len(scale)
    fy, fx = factors[-2] or 1.0, factors[-1] or 1.0
    z = scale[-3] * (factors[-3] or 1.0) if len(scale) >= 3 else None
    return (scale[-2] * fy, scale[-1] * fx), z


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer to ``path`` (a ``.tif``/``.tiff`` file) and return ``[path]``.

    Axes: ``YX``, ``ZYX`` (or ``TYX`` when the layer's first axis is labelled ``t``) and ``TZYX``;
    RGB layers as ``YXS``. Pixel size and Z spacing from the layer's scale (µm).
    """
    arr = np.asarray(data)
    if meta.get("rgb"):
        axes = "YXS" if arr.ndim == 3 else None
    else:
        labels = [str(a).lower() for a in meta.get("axis_labels") or ()]
        axes = {2: "YX", 3: "TYX" if labels[:1] == ["t"] else "ZYX", 4: "TZYX"}.get(arr.ndim)
    if axes is None:
        raise ValueError(f"cannot write a layer of shape {arr.shape} as a TIFF image")
    pixel, z = pixel_size_from_layer(meta)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    written = write_tiff(path, arr, pixel_size_um=pixel, axes=axes, z_spacing_um=z if axes[-3:-2] == "Z" else None)
    return [str(written)]


def write_layers(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """Write several image layers (a result's mean, std and residual, say) into the folder ``path``, one TIFF
    each named after its layer, with its pixel size; returns the files written."""
    from pathlib import Path

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for data, meta, _ in layer_data:
        name = "".join(c if c.isalnum() or c in " ._-±" else "_" for c in str(meta.get("name") or "layer")).strip()
        written += write_image(str(folder / f"{name or 'layer'}.tif"), data, meta)
    return written
