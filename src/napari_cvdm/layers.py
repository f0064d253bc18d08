"""Result layers of a reconstruction as plain napari layer-data tuples (no napari import).

The widgets turn a :class:`~napari_cvdm.models.Prediction` into layers with
these functions, so names, geometry and contrast are decided (and tested) here.

Geometry: napari places pixel ``i`` of an axis at ``translate + i · scale``
(the pixel's centre). An ``sr`` output has pixels half the input's; input pixel
``i`` covers ``[i − ½, i + ½]`` input pixels, so output pixels ``2i`` and
``2i + 1`` are centred at ``i ∓ ¼``: scale ``s / 2`` and translate ``t − s / 4``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .models import Prediction

__all__ = ["LayerData", "output_geometry", "robust_limits", "result_layer_names", "result_layers"]

#: ``(data, kwargs, layer_type)`` as napari's ``Viewer._add_layer_from_data`` takes it.
LayerData = tuple[np.ndarray, dict[str, Any], str]

#: Suffixes of the result layers, in the order they are added.
RESULT_SUFFIXES = ("mean", "std", "samples", "schedule")


def output_geometry(task: str, scale: Sequence[float], translate: Sequence[float],
                    plane_axis: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translate of the output layers from the input layer's.

    Parameters
    ----------
    task
        ``"sr"`` or ``"qpi"``.
    scale, translate
        The input layer's, one value per axis (µm, or pixels when the input has no pixel size).
    plane_axis
        ``qpi`` only: the input carries its two defocus planes on axis ``-3``
        (``(2, H, W)`` or ``(T, 2, H, W)``); that axis is dropped from the output.

    Returns
    -------
    scale, translate
        One value per output axis. ``sr``: the last two axes at half the pixel size,
        shifted by a quarter input pixel so that the output overlays the input.
    """
    s = [float(v) for v in scale]
    t = [float(v) for v in translate]
    if task == "sr":
        for ax in (-2, -1):
            t[ax] -= s[ax] / 4
            s[ax] /= 2
    elif task == "qpi":
        if plane_axis:
            del s[-3], t[-3]
    else:
        raise ValueError(f"unknown task {task!r}")
    return tuple(s), tuple(t)


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


def result_layers(input_name: str, task: str, prediction: Prediction, scale: Sequence[float],
                  translate: Sequence[float], units: Sequence[str] | None = None,
                  with_samples: bool = False, with_schedule: bool = False) -> list[LayerData]:
    """Layer-data tuples for a prediction.

    Parameters
    ----------
    input_name
        Name of the input layer (the results are named after it).
    task
        ``"sr"`` or ``"qpi"``.
    prediction
        Mean and std ``(..., H', W')``; samples ``(N, ..., H', W')``; schedule like the mean.
    scale, translate
        Output geometry from :func:`output_geometry`, one value per axis of the mean.
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
    value_units = "rad" if task == "qpi" else "input units"
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
        kwargs.update(name=names[suffix], colormap=colormap, contrast_limits=robust_limits(data),
                      blending="translucent", metadata={"cvdm": {"task": task, "kind": suffix, **meta}})
        return np.ascontiguousarray(data, np.float32), kwargs, "image"

    out = [layer("mean", prediction.mean, "gray", values=value_units),
           layer("std", prediction.std, "magma", values=value_units)]
    if with_samples and prediction.samples is not None:
        out.append(layer("samples", prediction.samples, "gray", extra_axis=True, values=value_units))
    if with_schedule and prediction.schedule is not None:
        out.append(layer("schedule", prediction.schedule, "viridis", values="learned rate λ(x)"))
    return out
