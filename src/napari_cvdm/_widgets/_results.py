"""Result layers in the viewer: add them, or refresh the ones the same run made before (never other layers)."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info

__all__ = ["add_or_update"]


def add_or_update(viewer: Any, data: np.ndarray, kwargs: dict[str, Any], owner: str) -> Image:
    """Refresh the layer of that name if the same owner made it (the same widget, input layer, model and task),
    else add a new layer: napari gives it a unique name, so a result never replaces a layer it does not own."""
    name = kwargs["name"]
    existing = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 - LayerList has no get()
    mine = isinstance(existing, Image) and existing.metadata.get("cvdm", {}).get("owner") == owner
    kwargs = {**kwargs, "metadata": {"cvdm": {**kwargs.get("metadata", {}).get("cvdm", {}), "owner": owner}}}
    if not mine:
        if existing is not None:
            show_info(f"a layer named '{name}' exists and belongs to another run; adding a new one beside it")
        return viewer.add_image(data, **kwargs)
    existing.data = data
    for key in ("scale", "translate", "units", "contrast_limits", "metadata"):
        if key in kwargs:
            setattr(existing, key, kwargs[key])
    return existing
