"""A qpi reconstructor that takes brightfield images as a camera writes them (:mod:`napari_cvdm.physics.brightfield`):
through-focus stacks, raw counts with an image of the empty field, saturation reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .consistency import check_consistency, with_warnings
from .diffusion.sampler import ProgressCallback
from .physics.brightfield import ESTIMATE, prepare_brightfield
from .physics.retrieval import fit_margins
from .predict import Prediction, Predicts, SamplingOptions
from .tasks.qpi_condition import RETRIEVAL_NOISE, pair_noise
from .tasks.records import interior_rms

__all__ = ["BrightfieldInput", "with_brightfield_input", "read_flat_field", "stack_check"]


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
        """The inner reconstructor's prediction of the prepared pair (``(2, H, W)`` or ``(T, 2, H, W)``); a classical
        retrieval given a through-focus stack fits all its planes (:meth:`Task.stack_methods`)."""
        prepared = prepare_brightfield(image, self.flat_field)
        from_stack = self._stack_method(prepared.stack)
        if from_stack is not None:  # the fit to every plane is checked plane by plane against the pair
            prediction = self._from_stack(from_stack, prepared.stack, prepared.planes)
            fitted = f"a through-focus stack of {len(prepared.stack)} planes: the phase is fitted to all of them"
            return with_warnings(prediction, [fitted, *prepared.notes[1:]])  # the first said the outer pair is used
        prediction = self.inner.predict_with(prepared.planes, options, callback)
        notes = prepared.notes
        if prepared.stack is not None:
            notes = [*notes, stack_check(prepared.stack, prediction.mean, self.inner.optics)]
        return with_warnings(prediction, notes)

    def _stack_method(self, stack: np.ndarray | None) -> Any:
        """The inner classical method's variant that fits every plane of ``stack`` (``None``: there is none, or no
        stack)."""
        if stack is None or getattr(self.inner, "stochastic", True):
            return None
        return self.inner.task.stack_methods(self.inner.optics).get(self.inner.label)

    def _from_stack(self, method: Any, stack: np.ndarray, pair: np.ndarray) -> Prediction:
        """``method``'s phase of ``stack`` ``(N, H, W)``, checked as the inner method's result is, against the
        outer ``pair`` ``(2, H, W)``."""
        mean = np.asarray(method(stack), np.float32)
        return check_consistency(
            Prediction(mean=mean, std=np.zeros_like(mean)), self.inner.task, self.inner.optics, pair
        )


def stack_check(stack: np.ndarray, phase: np.ndarray, optics: Any) -> str:
    """How well a phase ``(H, W)`` (rad) from a stack's outer pair explains every plane of the stack ``(N, H, W)``
    (unit illumination, evenly spaced from −dz to +dz): the field outside the image and the amplitude fitted, the
    phase held (:func:`~napari_cvdm.physics.retrieval.fit_margins`), each plane's residual in units of the noise —
    the inner planes, which the phase was not made from, check it without a ground truth."""
    n = stack.shape[0]
    dz = [float(v) for v in np.linspace(-optics.dz_um, optics.dz_um, n)]
    x = torch.from_numpy(np.asarray(stack, np.float32))[None]
    fit = fit_margins(
        x,
        torch.from_numpy(np.asarray(phase, np.float32))[None],
        dz,
        optics.wavelength_um,
        optics.pixel_um,
        RETRIEVAL_NOISE,
    )
    unit = RETRIEVAL_NOISE / pair_noise(stack[[0, -1]])
    per_plane = ", ".join(f"{interior_rms(fit.residual[0, k].numpy()) * unit:.2f}×" for k in range(n))
    return (
        f"across the stack's {n} planes (−dz to +dz) the phase explains them to {per_plane} the noise (the inner "
        "planes, which it was not made from, check it: about 1 or less where it is right)"
    )


def read_flat_field(value: str | Path | None) -> np.ndarray | str | None:
    """The flat-field option: ``None``, :data:`~napari_cvdm.physics.brightfield.ESTIMATE`, or a file of the empty
    field (any format ``predict`` reads) read into ``(H, W)`` or ``(Z, H, W)``."""
    if value is None:
        return None
    if str(value) == ESTIMATE:
        return ESTIMATE
    from .data.microscope_files import read_image

    return np.asarray(read_image(Path(value)).data, np.float64)


def with_brightfield_input(reconstructor: Any, flat_field: str | Path | None = None) -> Any:
    """``reconstructor`` taking camera planes when its task's input is brightfield planes (qpi); unchanged
    otherwise."""
    if not reconstructor.task.brightfield:
        if flat_field is not None:
            raise ValueError("--flat-field is for brightfield planes (qpi models and methods)")
        return reconstructor
    return BrightfieldInput(reconstructor, read_flat_field(flat_field))
