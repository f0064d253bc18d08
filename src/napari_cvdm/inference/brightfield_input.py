"""A qpi reconstructor that takes brightfield images as a camera writes them (:mod:`napari_cvdm.physics.brightfield`):
through-focus stacks, raw counts with an image of the empty field, saturation reported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..diffusion.sampler import ProgressCallback, SamplingCancelled, SamplingProgress
from ..physics.brightfield import ESTIMATE, PreparedPlanes, prepare_brightfield
from ..physics.noise import pair_noise
from ..physics.retrieval import fit_margins
from ..tasks.qpi_condition import RETRIEVAL_NOISE
from ..tasks.records import CheckedImage, interior_rms, outer_defocus, pixel_yx
from .consistency import check_consistency, with_warnings
from .predict import Prediction, SamplingOptions
from .reconstructor import Predicts

__all__ = ["BrightfieldInput", "CameraPlanes", "with_brightfield_input", "read_flat_field", "stack_check"]


@dataclass(frozen=True)
class CameraPlanes:
    """Brightfield images as the camera wrote them (:meth:`BrightfieldInput.given`), with the pair made of them
    where it could be made at once.

    Attributes
    ----------
    data
        The camera's planes: ``(2, H, W)``, ``(N, H, W)`` through focus, with a time axis in front, raw or divided.
    pixel_um
        Their pixel size (y, x) in µm where known.
    dz_um
        The defocus ±dz (µm) of the outer planes where the spacing of the planes is known.
    prepared
        The planes made into a pair (:func:`~napari_cvdm.physics.brightfield.prepare_brightfield`), or ``None``
        where that is left to the run (an empty field estimated from the planes).
    pair
        ``prepared.planes`` checked by the task (:class:`~napari_cvdm.tasks.records.CheckedImage`), or ``None``.
    """

    data: np.ndarray
    pixel_um: tuple[float, float] | None = None
    dz_um: float | None = None
    prepared: PreparedPlanes | None = None
    pair: CheckedImage | None = None


@dataclass(frozen=True)
class BrightfieldInput(Predicts):
    """``inner`` (any qpi :class:`~napari_cvdm.inference.reconstructor.Reconstructor`) given the pair prepared from the
    camera's planes (:func:`~napari_cvdm.physics.brightfield.prepare_brightfield`); what was done is added to the
    warnings. Every other attribute is the inner reconstructor's."""

    inner: Any
    flat_field: np.ndarray | str | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "flat_field") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def given(
        self, image: Any, pixel_um: Sequence[float] | None = None, plane_spacing_um: float | None = None
    ) -> CameraPlanes:
        """The camera's planes with their pixel size (y, x) in µm and the spacing of the planes (µm; their outer
        pair's defocus follows from it) where known, made into a checked pair at once (``ValueError`` with a message
        for the user, e.g. raw counts without an empty field) unless the empty field is to be estimated from them
        (a fit left to the run)."""
        pixel, dz = pixel_yx(pixel_um), None
        if isinstance(image, CheckedImage):
            image, pixel, dz = image.as_given(), pixel or image.pixel_um, image.dz_um
        data = np.asarray(image)
        if data.ndim >= 3:
            dz = outer_defocus(data.shape[-3], plane_spacing_um) or dz
        if isinstance(self.flat_field, str):
            return CameraPlanes(data, pixel, dz)
        prepared = prepare_brightfield(data, self.flat_field)
        return CameraPlanes(data, pixel, dz, prepared, self.inner.task.checked(prepared.planes, pixel, dz))

    def predict_with(
        self, image: Any, options: SamplingOptions | None = None, callback: ProgressCallback | None = None
    ) -> Prediction:
        """The inner reconstructor's prediction of the prepared pair (``(2, H, W)`` or ``(T, 2, H, W)``); a classical
        retrieval fits every plane of a through-focus stack and leaves saturated pixels out
        (:meth:`Task.camera_methods`). ``image``: the camera's planes, or what :meth:`given` made of them."""
        given = image if isinstance(image, CameraPlanes) else self.given(image)
        prepared = given.prepared if given.prepared is not None else prepare_brightfield(given.data, self.flat_field)
        pair = (
            given.pair
            if given.pair is not None
            else self.inner.task.checked(prepared.planes, given.pixel_um, given.dz_um)
        )
        method = self._camera_method(prepared)
        if method is not None:
            return self._from_camera(method, prepared, pair, callback)
        prediction = self.inner.predict_with(pair, options, callback)
        notes = prepared.notes
        if prepared.stack is not None:
            notes = [*notes, stack_check(prepared.stack, prediction.mean, self._optics_for(pair))]
        return with_warnings(prediction, notes)

    def _optics_for(self, pair: CheckedImage) -> Any:
        """The optics the inner reconstructor runs ``pair`` at (a model may take them from the pair's file)."""
        for_image = getattr(self.inner, "for_image", None)
        return for_image(pair).optics if for_image is not None else self.inner.optics

    def _camera_method(self, prepared: PreparedPlanes) -> Any:
        """The inner classical method's variant that takes the camera's planes as they are, where it has one and
        they need it (a stack, or a pair with saturated pixels); else ``None``."""
        needed = prepared.stack is not None or (prepared.planes.ndim == 3 and bool(prepared.saturated.any()))
        if not needed or getattr(self.inner, "stochastic", True):
            return None
        return self.inner.task.camera_methods(self.inner.optics).get(self.inner.label)

    def _from_camera(
        self, method: Any, prepared: PreparedPlanes, pair: CheckedImage, callback: ProgressCallback | None
    ) -> Prediction:
        """``method``'s phase of every plane (a stack) or of the valid pixels (a pair with saturated ones), checked
        as the inner method's result is, against the pair; ``callback`` hears of it and may cancel before and
        after, as a classical method's does."""
        if prepared.stack is not None:
            data, valid = prepared.stack, None
            fitted = f"a through-focus stack of {len(data)} planes: the phase is fitted to all of them"
            notes = [fitted, *prepared.notes[1:]]  # the first said that the outer pair is used
        else:
            data, valid = prepared.planes, ~prepared.saturated
            notes = [*prepared.notes, "the saturated pixels are left out of the retrieval's fit"]
        if callback is not None and callback(SamplingProgress(0, 1)) is False:
            raise SamplingCancelled("cancelled")
        mean = np.asarray(method(data, valid), np.float32)
        if callback is not None and callback(SamplingProgress(1, 1)) is False:
            raise SamplingCancelled("cancelled")
        prediction = Prediction(mean=mean, std=np.zeros_like(mean))
        checked = check_consistency(prediction, self.inner.task, self.inner.optics, pair)
        return with_warnings(checked, notes)


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
    from ..data.microscope_files import read_image

    return np.asarray(read_image(Path(value)).data, np.float64)


def with_brightfield_input(reconstructor: Any, flat_field: str | Path | None = None) -> Any:
    """``reconstructor`` taking camera planes when its task's input is brightfield planes (qpi); unchanged
    otherwise."""
    if not reconstructor.task.brightfield:
        if flat_field is not None:
            raise ValueError("--flat-field is for brightfield planes (qpi models and methods)")
        return reconstructor
    return BrightfieldInput(reconstructor, read_flat_field(flat_field))
