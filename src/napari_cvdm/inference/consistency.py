"""A reconstruction checked against its input: each plane's mean pushed back through the task's forward model (the
residual, in noise units), the task's warnings about the result and the input, and the pixel-size check."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..physics.optics import Optics
from ..tasks import Task, get_task
from ..tasks.records import CheckedImage, Consistency
from .file_optics import defocus_warning
from .predict import Prediction

__all__ = ["check_consistency", "check_consistency_quickly", "check_defocus", "check_pixel_size", "with_warnings"]


def with_warnings(prediction: Prediction, new: list[str]) -> Prediction:
    """The prediction with the plain-text warnings of ``new`` it does not have yet appended (each issued once
    as a Python warning)."""
    remarks = list(prediction.warnings)
    for remark in new:
        if remark not in remarks:
            remarks.append(remark)
            warnings.warn(remark, stacklevel=3)
    return dataclasses.replace(prediction, warnings=remarks)


def check_consistency(
    prediction: Prediction,
    task: Task | str,
    optics: Optics,
    image: np.ndarray | CheckedImage,
    ranges: dict[str, Any] | None = None,
) -> Prediction:
    """The prediction with its consistency check: each plane's mean through the task's forward model against
    the input (:meth:`Task.consistency`), the residual map, its RMS and the task's warnings — the result's and
    the input's (:meth:`Task.distribution_warnings`, first plane of a stack) — also issued as Python warnings.

    Parameters
    ----------
    prediction
        The result of :func:`predict_image` for ``image``.
    optics
        The optics of the model (the forward model).
    image
        The input given to :func:`predict_image`; where it is a :class:`CheckedImage` with a known pixel size, that
        size is checked against ``optics`` too (:func:`check_pixel_size`).
    ranges
        The imaging conditions the model was trained on (``None``: unknown, not checked).
    """
    task = get_task(task)
    return _checked(prediction, task, optics, image, ranges, task.consistency)


def check_consistency_quickly(
    prediction: Prediction, task: Task | str, optics: Optics, image: np.ndarray | CheckedImage
) -> Prediction:
    """:func:`check_consistency` with the task's quick check (:meth:`Task.quick_consistency`): for fast classical
    methods, whose full check would cost far more than the method."""
    task = get_task(task)
    return _checked(prediction, task, optics, image, None, task.quick_consistency)


def _checked(
    prediction: Prediction,
    task: Task,
    optics: Optics,
    image: np.ndarray | CheckedImage,
    ranges: dict[str, Any] | None,
    check: Callable[[np.ndarray, np.ndarray, Optics], Consistency],
) -> Prediction:
    checked = task.checked(image)
    means = [prediction.mean] if checked.single else list(prediction.mean)
    checks = [check(plane, mean, optics) for plane, mean in zip(checked.planes, means)]
    found = task.distribution_warnings(checked.planes[0], optics, ranges) + [w for c in checks for w in c.warnings]
    residual = np.stack([c.residual for c in checks])
    refs = [c.reference_rms for c in checks if c.reference_rms is not None]
    result = dataclasses.replace(
        with_warnings(prediction, found),
        residual=residual[0] if checked.single else residual,
        residual_rms=max(c.rms for c in checks),
        reference_rms=max(refs) if refs else None,
        optics=optics,
    )
    return check_defocus(check_pixel_size(result, task, optics, checked.pixel_um), optics, checked.dz_um)


def check_pixel_size(
    prediction: Prediction, task: Task | str, optics: Optics, pixel_um: tuple[float, float] | None
) -> Prediction:
    """The prediction with a warning when the input's known pixel size (µm, from its file or layer; ``None``:
    unknown) is far from the model's (:meth:`Task.pixel_size_warning`); it replaces the guess of the same from
    the image's spectrum (:meth:`Task.undersampling_remark`), which would say it a second time."""
    task = get_task(task)
    remark = task.pixel_size_warning(pixel_um, optics)
    if remark is None:
        return prediction
    guess = task.undersampling_remark(optics)
    kept = dataclasses.replace(prediction, warnings=[w for w in prediction.warnings if w != guess])
    return with_warnings(kept, [remark])


def check_defocus(prediction: Prediction, optics: Optics, dz_um: float | None) -> Prediction:
    """The prediction with a warning when the defocus the input's planes are stated at (µm, from the spacing its file
    or layer gives; ``None``: unknown) differs from the run's
    (:func:`~napari_cvdm.inference.file_optics.defocus_warning`)."""
    remark = defocus_warning(dz_um, optics)
    return prediction if remark is None else with_warnings(prediction, [remark])
