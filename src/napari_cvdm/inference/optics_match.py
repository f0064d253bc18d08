"""A model run at the user's optics by physics similarity: the input is resampled so that its physics matches the
model's (sr: the OTF cut-off in cycles per pixel; qpi: the Fresnel number), reconstructed, and resampled back to the
task's output grid of the user's image; the result is then checked against the input through the user's optics.

:func:`at_optics` gives a :class:`ModelAtOptics`, which predicts like the model it wraps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..data.resample import resample_last_two
from ..diffusion.sampler import ProgressCallback, SamplingProgress
from ..physics.optics import Optics
from ..tasks import MIN_SIDE, Task
from ..tasks.records import CheckedImage
from .consistency import check_consistency, with_warnings
from .file_optics import image_stated, in_words, reads_off_image, taken
from .models import CVDMModel
from .predict import PartialResult, Prediction, SamplingOptions
from .reconstructor import Predicts
from .similarity import SIMILARITY_REACH, similarity_refusal, similarity_remark

__all__ = [
    "ModelAtOptics",
    "ModelAtImageOptics",
    "ModelAtFileOptics",
    "at_optics",
    "at_image_optics",
    "at_file_optics",
    "model_at",
    "similarity_remark",
    "similarity_refusal",
    "SIMILARITY_REACH",
]

#: Enlargements closer to 1 than this run the model on the image as it is.
SAME_SCALE = 0.02


#: The optics fields a file or layer can state (:mod:`~napari_cvdm.inference.file_optics`).
FILLED_FROM_FILE = frozenset({"pixel_um", "dz_um"})


def _refused(model: CVDMModel, optics: Optics, reason: str) -> ValueError:
    """The error for ``optics`` given for ``model`` that it cannot run at (``reason``: :func:`similarity_refusal`)."""
    own = model.optics.to_dict()
    given = optics.describe({k for k, v in optics.to_dict().items() if v != own.get(k)})
    defocus = "; dz is each plane's distance from focus, half the spacing of a pair" if "dz_um" in own else ""
    return ValueError(
        f"{given}: {reason}. Check the values and their units (µm at the sample{defocus}), or use a classical "
        "method (they run at any optics)"
    )


@dataclass(frozen=True)
class _ModelAtOtherOptics(Predicts):
    """What a model run at other optics shares with the model: its task, network, name and steps."""

    stochastic: ClassVar[bool] = True
    model: CVDMModel
    optics: Optics

    @property
    def task(self) -> Task:
        return self.model.task

    @property
    def network(self) -> Any:
        return self.model.network

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def label(self) -> str:
        return self.model.label

    @property
    def default_steps(self) -> int:
        return self.model.default_steps

    @property
    def path(self) -> Any:
        return self.model.path


@dataclass(frozen=True)
class ModelAtOptics(_ModelAtOtherOptics):
    """A :class:`~napari_cvdm.inference.models.CVDMModel` run at other optics (see the module's text).

    Attributes
    ----------
    model
        The model, with the optics it was trained for.
    optics
        The optics of the images to reconstruct (the task's optics class; µm).
    scale
        The enlargement of the input that makes its physics the model's (:meth:`Task.similarity_scale`).
    """

    scale: float

    def predict_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """The model's calibrated prediction of the resampled image, brought back to the output grid of
        ``image``, and checked against ``image`` through these optics (and these optics against what the image's
        own spectrum says of them)."""
        checked = self.task.checked(image)
        disagreement = self.task.optics_disagreement(checked.planes[0], self.optics)
        prediction = self.sample_with(checked, options, callback)
        return self.check_result(checked, prediction, [disagreement] if disagreement else [])

    def check_result(self, image: CheckedImage, prediction: Prediction, remarks: list[str]) -> Prediction:
        """``prediction`` of ``image`` checked through these optics, with ``remarks`` and the warning when the
        enlargement leaves what the model covers."""
        checked = check_consistency(prediction, self.task, self.optics, image, self.model.trained_ranges)
        outside = similarity_remark(self.task, self.scale)
        return with_warnings(checked, [*remarks, *([outside] if outside else [])])

    def sample_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Mean, calibrated std and samples on the output grid of ``image`` (no consistency check)."""
        checked = self.task.checked(image)
        h, w = checked.planes.shape[-2:]
        inner = (max(round(h * self.scale), MIN_SIDE), max(round(w * self.scale), MIN_SIDE))
        out = (self.task.gain * h, self.task.gain * w)
        resampled = checked.with_planes(resample_last_two(checked.planes, inner))
        pred = self.model.sample_with(resampled, options, _partials_at(callback, out))
        return _prediction_at(pred, out)


def _prediction_at(pred: Prediction, out: tuple[int, int]) -> Prediction:
    """``pred`` resampled to the output grid ``out`` (the std and the samples' spread as variances)."""
    return dataclasses.replace(
        pred,
        mean=resample_last_two(pred.mean, out),
        std=resample_last_two(pred.std, out, variance=True),
        samples=None if pred.samples is None else resample_last_two(pred.samples, out),
        schedule=None if pred.schedule is None else resample_last_two(pred.schedule, out),
        sample_std=None if pred.sample_std is None else resample_last_two(pred.sample_std, out, variance=True),
    )


def _partials_at(callback: ProgressCallback | None, out: tuple[int, int]) -> ProgressCallback | None:
    """``callback`` given the running results of a progressive run on the output grid ``out``."""
    if callback is None:
        return None

    def report(progress: SamplingProgress) -> Any:
        if isinstance(progress.partial, PartialResult):
            part = dataclasses.replace(progress.partial, prediction=_prediction_at(progress.partial.prediction, out))
            progress = dataclasses.replace(progress, partial=part)
        return callback(progress)

    return report


def at_optics(model: CVDMModel, optics: dict[str, Any] | Optics) -> CVDMModel | ModelAtOptics:
    """``model`` run at ``optics`` (an optics object, or field → value changes of the model's own); the model
    itself when the physics is the same.

    Raises
    ------
    ValueError
        A field the task's optics does not have, a value out of range, or optics that would need the image resampled
        far beyond what the model covers (:func:`similarity_refusal`).
    """
    target = optics if isinstance(optics, Optics) else model.task.optics_with(dict(optics), model.optics)
    if target == model.optics:
        return model
    reason = similarity_refusal(model.task, model.task.similarity_scale(model.optics, target))
    if reason is not None:
        raise _refused(model, target, reason)
    return _mapped(model, target)


def _mapped(model: CVDMModel, optics: Optics) -> ModelAtOptics:
    """``model`` at ``optics`` with the enlargement that makes the physics its own (1 when it nearly is)."""
    scale = model.task.similarity_scale(model.optics, optics)
    return ModelAtOptics(model, optics, 1.0 if abs(scale - 1.0) < SAME_SCALE else scale)


class _ModelPerImage(_ModelAtOtherOptics):
    """A model whose optics are chosen image by image (:meth:`for_image`)."""

    def for_image(self, image: np.ndarray | CheckedImage) -> Any:
        """What reconstructs ``image``."""
        raise NotImplementedError

    def sample_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Mean, calibrated std and samples of ``image`` by :meth:`for_image` (no consistency check)."""
        checked = self.task.checked(image)
        return self.for_image(checked).sample_with(checked, options, callback)


@dataclass(frozen=True)
class ModelAtImageOptics(_ModelPerImage):
    """A model run at optics partly read off each image (:meth:`Task.estimated_optics`; sr: the cut-off from the
    image's spectrum, for users who know their pixel but not their NA or emission), then as
    :class:`ModelAtOptics`. The estimate is told with each result.

    Attributes
    ----------
    model
        The model, with the optics it was trained for.
    optics
        What is known of the images' optics (the rest: the model's).
    """

    def for_image(self, image: np.ndarray | CheckedImage) -> ModelAtOptics:
        """The model at the optics estimated from ``image``'s first plane."""
        first = self.task.checked(image).planes[0]
        return _mapped(self.model, self.task.estimated_optics(first, self.optics) or self.optics)

    def predict_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """:meth:`ModelAtOptics.predict_with` at the optics estimated from ``image``, which a remark states (no
        check of those optics against the image's spectrum: they were read off it)."""
        image = self.task.checked(image)
        run = self.for_image(image)
        prediction = run.sample_with(image, options, callback)
        changed = {k for k, v in run.optics.to_dict().items() if v != self.optics.to_dict().get(k)}
        told = run.optics.describe(changed)
        remark = (
            f"optics read off the image ({told}; the image enlarged {run.scale:.2f}× for the model): give them "
            "if you know them"
        )
        return run.check_result(image, prediction, [remark] if changed else [])


def at_image_optics(model: CVDMModel, optics: dict[str, Any]) -> ModelAtImageOptics:
    """``model`` run at ``optics`` (field → value changes of the model's own) completed from each image."""
    return ModelAtImageOptics(model, model.task.optics_with(dict(optics), model.optics))


@dataclass(frozen=True)
class ModelAtFileOptics(_ModelPerImage):
    """A model run at the optics the user gave, completed image by image from what its file or layer states where
    the user gave nothing (:func:`~napari_cvdm.inference.file_optics.stated_changes`: the pixel size, the defocus of
    brightfield planes), which a remark states; given nothing and stating nothing, the model itself runs.

    Attributes
    ----------
    model
        The model, with the optics it was trained for.
    optics
        The model's optics with the user's changes (what runs where the image states nothing else).
    changed
        The user's changes of the model's optics (field → value; empty: none), which no file overrides.
    """

    changed: dict[str, float] = dataclasses.field(default_factory=dict, hash=False)

    def for_image(self, image: np.ndarray | CheckedImage) -> CVDMModel | ModelAtOptics | ModelAtImageOptics:
        """What reconstructs ``image``: the model at the optics given and those its file or layer states."""
        return self._run_for(self._taken(self.task.checked(image))[0])

    def _taken(self, image: CheckedImage) -> tuple[dict[str, float], str | None]:
        """The optics fields ``image``'s file or layer states that the model runs at beside those given (field →
        value; :func:`~napari_cvdm.inference.file_optics.taken`) — none, with the warning why, where they would need
        the image resampled beyond the model's reach (:func:`similarity_refusal`: most likely a unit wrong in the
        file) and those given alone would not.

        Raises
        ------
        ValueError
            The optics given, with or without the file's, out of the model's reach.
        """
        t = taken(self.task, image_stated(image, self.optics), self.model.optics, self.changed)
        if t.refused:
            raise _refused(self.model, self.task.optics_with({**self.changed, **t.changes}, self.model.optics), t.why)
        if not t.dropped:
            return t.changes, None
        own = "those given and the model's" if self.changed else "its own optics"
        return {}, (
            f"the image's file or layer states {_said(t.dropped, self.model.optics)}, but {t.why}: a unit in the file "
            f"is probably wrong, so the model ran at {own}; give the right ones (the optics options or form)"
        )

    def _run_for(self, changes: dict[str, float]) -> CVDMModel | ModelAtOptics | ModelAtImageOptics:
        """The model at the optics given with the file's ``changes`` (field → value; the pixel size alone: the rest
        read off the image), or the model itself for none."""
        merged = {**self.changed, **changes}
        if reads_off_image(self.task, merged):
            return at_image_optics(self.model, merged)
        return at_optics(self.model, merged)

    def predict_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """The prediction of ``image`` by :meth:`for_image`, checked; a remark names what was taken from the image's
        file or layer."""
        checked = self.task.checked(image)
        changes, refusal = self._taken(checked)
        prediction = self._run_for(changes).predict_with(checked, options, callback)
        if refusal is not None:
            return with_warnings(prediction, [refusal])
        if not changes:
            return prediction
        said = _said(changes, self.model.optics)
        remark = f"from the image's file or layer: {said}; the model ran at them by physics similarity"
        return with_warnings(prediction, [remark])


def _said(changes: dict[str, float], own: Optics) -> str:
    """The optics ``changes`` (field → value) beside the model's ``own``, in words."""
    values = own.to_dict()
    return ", ".join(f"{in_words(k, v)} (the model's: {in_words(k, values[k])})" for k, v in changes.items())


def at_file_optics(model: CVDMModel) -> ModelAtFileOptics:
    """``model`` run at what each image's file or layer states of its optics (:class:`ModelAtFileOptics`)."""
    return ModelAtFileOptics(model, model.optics)


def model_at(model: CVDMModel, optics: dict[str, Any]) -> ModelAtFileOptics | ModelAtImageOptics:
    """What runs ``model`` for images of ``optics`` (field → value, the fields the user changed from the model's):
    given the pixel size alone for a task that reads the rest off the image (sr), the rest read off each image
    (:func:`at_image_optics`); otherwise the optics given, completed from each image's file or layer where the user
    gave nothing (:class:`ModelAtFileOptics`; given nothing: the model at what the file states).

    Raises
    ------
    ValueError
        As :func:`at_optics`, for the optics given where a file can add nothing to them (else image by image).
    """
    if not optics:
        return at_file_optics(model)
    if set(optics) == {"pixel_um"} and model.task.reads_optics_off_image:
        return at_image_optics(model, optics)
    target = model.task.optics_with(dict(optics), model.optics)  # a value out of range: refused at once
    if not (FILLED_FROM_FILE & target.to_dict().keys()) - set(optics):
        at_optics(model, target)  # nothing left for a file to fill in: out of reach, refused at once
    return ModelAtFileOptics(model, target, dict(optics))
