"""Result layers of a reconstruction as plain napari layer-data tuples (no napari import).

The widgets turn a :class:`~napari_cvdm.models.Prediction` into layers with
these functions, so names, geometry and contrast are decided (and tested) here.

Geometry (scale and translate of the outputs) comes from the task:
:meth:`napari_cvdm.tasks.Task.output_geometry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .predict import Prediction
from .tasks import Task

__all__ = ["LayerData", "robust_limits", "result_layer_names", "result_layers"]

#: ``(data, kwargs, layer_type)`` as napari's ``Viewer._add_layer_from_data`` takes it.
LayerData = tuple[np.ndarray, dict[str, Any], str]

#: Suffixes of the result layers, in the order they are added.
RESULT_SUFFIXES = ("mean", "std", "samples", "schedule")


def robust_limits(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """Contrast limits from percentiles of the finite values (a range of 1 when the image is flat)."""
    values = np.asarray(image, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, (low, high)))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def result_layer_names(input_name: str) -> dict[str, str]:
    """``{"mean": "<input> CVDM mean", "std": ..., "samples": ..., "schedule": ...}``."""
    return {suffix: f"{input_name} CVDM {suffix}" for suffix in RESULT_SUFFIXES}


def result_layers(
    input_name: str,
    task: Task,
    prediction: Prediction,
    scale: Sequence[float],
    translate: Sequence[float],
    units: Sequence[str] | None = None,
    with_samples: bool = False,
    with_schedule: bool = False,
) -> list[LayerData]:
    """Layer-data tuples for a prediction.

    Parameters
    ----------
    input_name
        Name of the input layer (the results are named after it).
    task
        The task (units of the values, recorded in the metadata).
    prediction
        Mean and std ``(..., H', W')``; samples ``(N, ..., H', W')``; schedule like the mean.
    scale, translate
        Output geometry from :meth:`~napari_cvdm.tasks.Task.output_geometry`, one value per axis of the mean.
    units
        Units of the output axes (e.g. ``("µm", "µm")``), or ``None``.
    with_samples, with_schedule
        Also return the samples (a stack along a new first axis) and the learned λ map.

    Returns
    -------
    list of LayerData
        Mean (gray), std (magma), then optionally samples and schedule (viridis);
        contrast limits from robust percentiles.
    """
    names = result_layer_names(input_name)
    value_units = task.value_units
    base = {"scale": tuple(scale), "translate": tuple(translate)}
    if units is not None:
        base["units"] = tuple(units)

    def layer(suffix: str, data: np.ndarray, colormap: str, extra_axis: bool = False, **meta: Any) -> LayerData:
        kwargs = dict(base)
        if extra_axis:
            kwargs["scale"] = (1.0, *kwargs["scale"])
            kwargs["translate"] = (0.0, *kwargs["translate"])
            if units is not None:
                kwargs["units"] = ("pixel", *kwargs["units"])
        kwargs.update(
            name=names[suffix],
            colormap=colormap,
            contrast_limits=robust_limits(data),
            blending="translucent",
            metadata={"cvdm": {"task": task.name, "kind": suffix, **meta}},
        )
        return np.ascontiguousarray(data, np.float32), kwargs, "image"

    out = [
        layer("mean", prediction.mean, "gray", values=value_units),
        layer("std", prediction.std, "magma", values=value_units),
    ]
    if with_samples and prediction.samples is not None:
        out.append(layer("samples", prediction.samples, "gray", extra_axis=True, values=value_units))
    if with_schedule and prediction.schedule is not None:
        out.append(layer("schedule", prediction.schedule, "viridis", values="learned rate λ(x)"))
    return out
