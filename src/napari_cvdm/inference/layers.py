"""Result layers of a reconstruction as plain napari layer-data tuples (no napari import).

The widgets turn a :class:`~napari_cvdm.inference.models.Prediction` into layers with
these functions, so names, geometry and contrast are decided (and tested) here.

Geometry (scale and translate of the outputs) comes from the task:
:meth:`napari_cvdm.tasks.Task.output_geometry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.tiff import um_per_unit
from ..tasks import Task
from ..tasks.records import outer_defocus
from .predict import Prediction

__all__ = [
    "LayerData",
    "robust_limits",
    "result_layer_names",
    "result_layers",
    "residual_geometry",
    "residual_layer",
    "model_input",
    "RESIDUAL_LIMITS",
    "layer_pixel_size",
    "layer_plane_spacing",
    "layer_defocus",
]

#: ``(data, kwargs, layer_type)`` as napari's ``Viewer._add_layer_from_data`` takes it.
LayerData = tuple[np.ndarray, dict[str, Any], str]

#: Suffixes of the result layers, in the order they are added.
RESULT_SUFFIXES = ("mean", "std", "residual", "samples", "schedule")
#: Contrast of the residual layer, in noise units: ±3σ, so that noise looks faint and misfit stands out.
RESIDUAL_LIMITS = (-3.0, 3.0)


def layer_pixel_size(scale: Sequence[float], units: Sequence[Any] | None) -> tuple[float, float] | None:
    """``(y, x)`` pixel size in µm of a layer whose last two axes have a length unit (napari's ``units``: pint
    units or names such as ``"nm"``); ``None`` when the layer is in pixels or has no units."""
    if not units or len(units) < 2 or len(scale) < 2:
        return None
    factors = [um_per_unit(u) for u in units[-2:]]
    if any(f is None for f in factors):
        return None
    return float(scale[-2]) * factors[0], float(scale[-1]) * factors[1]


def layer_plane_spacing(scale: Sequence[float], units: Sequence[Any] | None, plane_axis: bool) -> float | None:
    """The spacing (µm) of the focal planes a layer carries on axis ``-3`` (``plane_axis``: a brightfield pair or
    through-focus stack) where that axis has a length unit; ``None`` otherwise."""
    if not plane_axis or not units or len(units) < 3 or len(scale) < 3:
        return None
    factor = um_per_unit(units[-3])
    return None if factor is None else float(scale[-3]) * factor


def layer_defocus(
    scale: Sequence[float], units: Sequence[Any] | None, shape: Sequence[int], plane_axis: bool
) -> float | None:
    """The defocus ``dz`` (µm) of the outer planes a layer of ``shape`` carries on axis ``-3`` (``plane_axis``),
    from their spacing (:func:`layer_plane_spacing`, :func:`~napari_cvdm.tasks.records.outer_defocus`); ``None``
    where unknown."""
    if len(shape) < 3:
        return None
    return outer_defocus(int(shape[-3]), layer_plane_spacing(scale, units, plane_axis))


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


def result_layer_names(input_name: str, label: str = "CVDM") -> dict[str, str]:
    """``{"mean": "<input> CVDM mean", "std": ..., "residual": ..., "samples": ..., "schedule": ...}``
    (``label``: ``CVDM``, or a classical method's, e.g. ``TIE``)."""
    return {suffix: f"{input_name} {label} {suffix}" for suffix in RESULT_SUFFIXES}


def residual_geometry(
    task: Task, scale: Sequence[float], translate: Sequence[float], plane_axis: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translate of the residual layer: the input's grid, with a planes axis in front when the input
    pair came from two one-plane layers (``plane_axis`` False for a two-plane task)."""
    if task.input_planes > 1 and not plane_axis:
        return (1.0, *map(float, scale)), (0.0, *map(float, translate))
    return tuple(map(float, scale)), tuple(map(float, translate))


def residual_layer(
    input_name: str,
    task: Task,
    prediction: Prediction,
    scale: Sequence[float],
    translate: Sequence[float],
    units: Sequence[str] | None = None,
    label: str = "CVDM",
) -> LayerData:
    """``<input> CVDM residual``: the mean pushed back through the forward model minus the input, in noise
    units (diverging colormap, fixed contrast :data:`RESIDUAL_LIMITS`), on the input's grid (see
    :func:`residual_geometry`), added hidden; its RMS is in the metadata."""
    if prediction.residual is None:
        raise ValueError("this prediction has no residual (predict_with checks it; predict_image does not)")
    geometry = {"scale": tuple(scale), "translate": tuple(translate)}
    if units is not None and len(units) == len(scale):
        geometry["units"] = tuple(units)
    meta = {
        "values": "residual (noise units)",
        "rms": prediction.residual_rms,
        "reference_rms": prediction.reference_rms,
    }
    data, kwargs, kind = _layer(
        result_layer_names(input_name, label)["residual"], prediction.residual, "PiYG", geometry, task, "residual", meta
    )
    kwargs["contrast_limits"] = RESIDUAL_LIMITS
    kwargs["visible"] = False  # on the input's grid it would cover the input and the mean: one click shows it
    return data, kwargs, kind


def result_layers(
    input_name: str,
    task: Task,
    prediction: Prediction,
    scale: Sequence[float],
    translate: Sequence[float],
    units: Sequence[str] | None = None,
    with_samples: bool = False,
    with_schedule: bool = False,
    label: str = "CVDM",
) -> list[LayerData]:
    """Layer-data tuples named after the input: mean (the task's colormap, :meth:`Task.display`; its metadata keeps
    the warnings and the residual's RMS), std (magma, added hidden; its metadata says whether it is calibrated;
    none when it is zero everywhere, as for a classical method), then optionally the samples (a stack along a
    new first axis) and the learned λ map (viridis); contrast from robust percentiles.

    ``scale``/``translate`` come from :meth:`~napari_cvdm.tasks.Task.output_geometry` (one value per axis of the
    mean ``(..., H', W')``); ``units`` are those of the output axes (e.g. ``("µm", "µm")``) or ``None``.
    """
    base = {"scale": tuple(scale), "translate": tuple(translate), **({"units": tuple(units)} if units else {})}
    names = result_layer_names(input_name, label)
    value = {"values": task.value_units}
    checked = {"warnings": list(prediction.warnings), "residual_rms": prediction.residual_rms}
    calibrated = prediction.sample_std is not None  # the std is the model's calibration of the samples' spread
    colormap, limits = task.display(np.asarray(prediction.mean))
    mean = _layer(names["mean"], prediction.mean, colormap, base, task, "mean", {**value, **checked})
    mean[1]["contrast_limits"] = limits or mean[1]["contrast_limits"]
    out = [mean]
    if np.any(prediction.std):  # a classical method, or one sample, has no spread to show
        std = _layer(names["std"], prediction.std, "magma", base, task, "std", {**value, "calibrated": calibrated})
        std[1]["visible"] = False  # the reconstruction stays in view; one click shows its uncertainty
        out.append(std)
    if with_samples and prediction.samples is not None:
        stacked = {
            k: (e, *v)
            for k, v, e in (
                ("scale", base["scale"], 1.0),
                ("translate", base["translate"], 0.0),
                ("units", base.get("units"), "pixel"),
            )
            if v is not None
        }
        out.append(_layer(names["samples"], prediction.samples, "gray", stacked, task, "samples", value))
    if with_schedule and prediction.schedule is not None:
        out.append(
            _layer(
                names["schedule"],
                prediction.schedule,
                "viridis",
                base,
                task,
                "schedule",
                {"values": "learned rate λ(x)"},
            )
        )
    return out


def _layer(
    name: str, data: np.ndarray, colormap: str, geometry: dict[str, Any], task: Task, kind: str, meta: dict[str, Any]
) -> LayerData:
    """One result layer: float32 data, geometry, colormap, robust contrast, and what it is in the metadata."""
    kwargs = {
        **geometry,
        "name": name,
        "colormap": colormap,
        "contrast_limits": robust_limits(data),
        "blending": "translucent",
        "metadata": {"cvdm": {"task": task.name, "kind": kind, **meta}},
    }
    return np.ascontiguousarray(data, np.float32), kwargs, "image"


def model_input(
    task: Task, name: str, data: np.ndarray, second: tuple[str, np.ndarray] | None = None
) -> tuple[np.ndarray, bool]:
    """The input of a model from one layer, or (for tasks that take a defocused pair) from two layers.

    Parameters
    ----------
    task
        The model's task.
    name, data
        The chosen layer: ``(2, H, W)`` or ``(T, 2, H, W)`` when it carries both planes of a pair, or a
        through-focus stack ``(N, H, W)`` for brightfield tasks (:mod:`~napari_cvdm.physics.brightfield`).
    second
        ``(name, data)`` of the +dz layer when the planes are two layers (ignored by one-plane tasks).

    Returns
    -------
    data, plane_axis
        The model's input, and whether the layer carries the planes on axis ``-3`` (dropped from the output).

    Raises
    ------
    ValueError
        A one-plane layer for a pair task, the same layer twice, or two layers of different shapes.
    """
    if task.input_planes == 1:
        return data, False
    if second is None:
        if task.brightfield and data.ndim == 3 and data.shape[0] >= 3:  # a through-focus stack: its outer pair
            return data, True
        if not (data.ndim >= 3 and data.shape[-3] == 2):
            raise ValueError(
                f"'{name}' has shape {data.shape}; {task.name} needs two defocused images: a layer "
                "with 2 planes (−dz, +dz) or a through-focus stack, or choose the +dz image as the second layer"
            )
        return data, True
    other, plus = second
    if plus is data or other == name:
        raise ValueError(f"'{name}' is chosen for both −dz and +dz; choose the +dz image as the second layer")
    if plus.shape != data.shape:
        raise ValueError(
            f"the −dz image '{name}' {data.shape} and the +dz image '{other}' {plus.shape} must have the same shape"
        )
    return np.stack([data, plus], axis=-3), False
