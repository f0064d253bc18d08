"""Result layers in the viewer: add them, or refresh the ones an earlier run of CVDM made (never other layers)."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info

__all__ = ["add_or_update"]


def add_or_update(viewer: Any, data: np.ndarray, kwargs: dict[str, Any]) -> Image:
    """Add a result layer, or refresh the layer of that name if CVDM made it (``"cvdm"`` in its metadata)."""
    name = kwargs["name"]
    existing = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 - LayerList has no get()
    if existing is None or not isinstance(existing, Image) or "cvdm" not in existing.metadata:
        if existing is not None:
            show_info(f"a layer named '{name}' exists and was not made by CVDM; adding a new one beside it")
        return viewer.add_image(data, **kwargs)
    existing.data = data
    for key in ("scale", "translate", "contrast_limits", "metadata"):
        if key in kwargs:
            setattr(existing, key, kwargs[key])
    return existing
