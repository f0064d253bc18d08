"""A qpi reconstructor that takes brightfield images as a camera writes them (:mod:`napari_cvdm.physics.brightfield`):
through-focus stacks, raw counts with an image of the empty field, saturation reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .consistency import with_warnings
from .diffusion.sampler import ProgressCallback
from .physics.brightfield import ESTIMATE, prepare_brightfield
from .predict import Prediction, Predicts, SamplingOptions

__all__ = ["BrightfieldInput", "with_brightfield_input", "read_flat_field"]


@dataclass(frozen=True)
class BrightfieldInput(Predicts):
    """``inner`` (any qpi :class:`~napari_cvdm.predict.Reconstructor`) given the pair prepared from the camera's
    planes (:func:`~napari_cvdm.physics.brightfield.prepare_brightfield`); what was done is added to the warnings. Every
    other attribute is the inner reconstructor's."""

    inner: Any
    flat_field: np.ndarray | str | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "flat_field") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def predict_with(
        self, image: np.ndarray, options: SamplingOptions | None = None, callback: ProgressCallback | None = None
    ) -> Prediction:
        """The inner reconstructor's prediction of the prepared pair (``(2, H, W)`` or ``(T, 2, H, W)``)."""
        prepared = prepare_brightfield(image, self.flat_field)
        return with_warnings(self.inner.predict_with(prepared.planes, options, callback), prepared.notes)


def read_flat_field(value: str | Path | None) -> np.ndarray | str | None:
    """The flat-field option: ``None``, :data:`~napari_cvdm.physics.brightfield.ESTIMATE`, or a TIFF of the empty field
    read into ``(H, W)`` or ``(Z, H, W)``."""
    if value is None or str(value) == ESTIMATE:
        return None if value is None else ESTIMATE
    from .data.tiff import read_tiff

    return np.asarray(read_tiff(Path(value)).data, np.float64)


def with_brightfield_input(reconstructor: Any, flat_field: str | Path | None = None) -> Any:
    """``reconstructor`` taking camera planes when its task's input is brightfield planes (qpi); unchanged
    otherwise."""
    if not reconstructor.task.brightfield:
        if flat_field is not None:
            raise ValueError("--flat-field is for brightfield planes (qpi models and methods)")
        return reconstructor
    return BrightfieldInput(reconstructor, read_flat_field(flat_field))
