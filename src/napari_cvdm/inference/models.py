"""Models: a trained network with its task, normalisation, optics and std calibration (:class:`CVDMModel`), loaded
from a model file (:func:`load_model`; the format is :mod:`napari_cvdm.inference.model_files`) or from the bundled
registry.

A model file holds the (EMA) weights of a :class:`~napari_cvdm.diffusion.CVDMNetwork`
as safetensors and, under the metadata key ``"napari_cvdm"``, a JSON object with
the format version, task, architecture, optics, normalisation, sampling defaults
and training provenance. Loading reads the header, validates it, builds the
network from the architecture and loads the tensors — nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..data.normalize import Normalization
from ..diffusion.network import CVDMNetwork
from ..diffusion.sampler import ProgressCallback, SamplingProgress
from ..physics.optics import Optics
from ..tasks import TASKS, Task
from ..tasks.records import CheckedImage
from ._malloc import release_freed_memory
from .consistency import check_consistency
from .model_files import (
    DEFAULT_STEPS,
    FORMAT,
    FORMAT_VERSION,
    ModelFileError,
    model_file_path,
    read_model_file,
    save_model,
    write_model_file,
)
from .predict import Prediction, SamplingOptions, predict_image
from .reconstructor import Predicts
from .uncertainty import StdCalibration, calibrate_prediction

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "CVDMModel",
    "Prediction",
    "save_model",
    "save_calibrated",
    "load_model",
    "bundled_model_path",
    "BUNDLED",
    "DEFAULT_STEPS",
]

BUNDLED = tuple(TASKS)  # one bundled model per task, named after it


@dataclass
class CVDMModel(Predicts):
    """A loaded model: network, task, optics, normalisation and metadata.

    Attributes
    ----------
    network
        The CVDM network (EMA weights), in eval mode.
    task
        The task object (:mod:`napari_cvdm.tasks`); ``task.name`` is ``"sr"`` or ``"qpi"``.
    normalization
        How inputs and targets are scaled.
    optics
        The optics the model was trained for (the task's optics class; µm).
    metadata
        The whole metadata block (provenance included).
    path
        The file it was loaded from, if any.
    label
        What result layers are called after: ``CVDM`` for a bundled model (``<input> CVDM mean``), ``CVDM <name>``
        for any other, so that two models' results on one image are told apart (``widefield CVDM sr-finetuned mean``).
    stochastic
        Whether it draws samples (``True``; classical methods: ``False``).
    """

    #: Draws samples (the std is their spread); classical methods do not.
    stochastic: ClassVar[bool] = True
    network: CVDMNetwork
    task: Task
    normalization: Normalization
    optics: Optics
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def default_steps(self) -> int:
        """Sampling steps used when ``steps=None``."""
        return int(self.metadata.get("sampling", {}).get("default_steps", DEFAULT_STEPS))

    @property
    def calibration(self) -> StdCalibration | None:
        """How the sample std is scaled into the std users see (``None``: the file records none)."""
        block = self.metadata.get("calibration")
        return StdCalibration.from_dict(block) if block else None

    @property
    def trained_ranges(self) -> dict[str, Any] | None:
        """The imaging conditions of the simulated training data (photon or noise range, ...) as the file records
        them, or ``None`` for a model trained on pairs (unknown). What a file does not record is the task's
        default for files that predate the record, except a condition the simulator gained later
        (:attr:`~napari_cvdm.tasks.base.Task.ranges_added_later`): such a file was trained without it."""
        data = self.metadata.get("training", {}).get("data", {})
        if not data.get("simulate"):
            return None
        defaults, later = self.task.simulation_ranges(), self.task.ranges_added_later
        filled = {k: later.get(k, v) for k, v in defaults.items() if k not in data}
        recorded = {k: data[k] for k in defaults if k in data}
        return {**{k: v for k, v in filled.items() if v is not None}, **recorded}

    @property
    def trained_variant(self) -> str | None:
        """The variant of the simulator (:attr:`~napari_cvdm.tasks.base.Task.variants`) that a share of the
        simulated training pairs was drawn as, or ``None``."""
        data = self.metadata.get("training", {}).get("data", {})
        return data.get("variant") if data.get("simulate") else None

    @property
    def trained_classes(self) -> list[str] | None:
        """The simulated classes (sr structures, qpi sources) the file says it was trained on, those this version
        of the task still knows; ``None`` for a model trained on pairs or a file without the record."""
        data = self.metadata.get("training", {}).get("data", {})
        known = set(self.task.default_classes(with_images=True)) | set(self.task.test_only_classes)
        names = [str(c) for c in data.get("classes") or () if str(c) in known] if data.get("simulate") else []
        return names or None

    @property
    def name(self) -> str:
        """A short name for lists and layer names."""
        return str(self.metadata.get("name") or (self.path.stem if self.path else self.task.name))

    @property
    def label(self) -> str:
        """``CVDM`` for a model named as a bundled one, ``CVDM <name>`` for any other (see the class docstring)."""
        return "CVDM" if self.name in BUNDLED else f"CVDM {self.name}"

    def predict_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """:meth:`predict` with the options as one object (``options.steps=None``: the model's default); the
        result is checked against the input through the model's optics (:func:`check_consistency`)."""
        checked = self.task.checked(image)
        prediction = self.sample_with(checked, options, callback)
        return check_consistency(prediction, self.task, self.optics, checked, self.trained_ranges)

    def sample_with(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Mean, (calibrated) std and samples without the consistency check (``residual`` is ``None``): for
        evaluations that score the mean against a known truth. Partial results of a progressive run reach
        ``callback`` calibrated too."""
        cal, checked = self.calibration, self.task.checked(image)
        if cal is None:
            return self.sample_raw(checked, options, callback)
        units, physics = self.value_units(checked), self._physics_maps(checked)  # shared by running and final results
        partial = _calibrating(callback, cal, units, physics)
        return self._calibrate(self.sample_raw(checked, options, partial), cal, units, checked, physics)

    def sample_raw(
        self, image: np.ndarray | CheckedImage, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Mean and the samples' own std, before the model's calibration (what ``calibrate`` fits)."""
        if options.steps is None:
            options = dataclasses.replace(options, steps=self.default_steps)
        prediction = predict_image(self.network, self.task, self.normalization, image, options, callback)
        release_freed_memory()  # the samplers' memory, before the calibration's and the check's image-sized arrays
        return prediction

    def value_units(self, image: np.ndarray | CheckedImage) -> list[float]:
        """Per input plane: the physical size of one normalised unit (:meth:`Task.value_unit`)."""
        return [self.task.value_unit(plane, self.normalization) for plane in self.task.checked(image).planes]

    def _physics_maps(self, checked: CheckedImage) -> Callable[[int], np.ndarray | None]:
        """Plane ``k`` of the input → the task's physics variance at every output pixel
        (:meth:`Task.physics_variance`; ``None`` when the task has none), each computed once and only when asked."""
        maps: dict[int, np.ndarray | None] = {}

        def of(k: int) -> np.ndarray | None:
            if k not in maps:
                maps[k] = self.task.physics_variance(checked.planes[k], self.optics)
            return maps[k]

        return of

    def calibrated(self, image: np.ndarray | CheckedImage, prediction: Prediction) -> Prediction:
        """``prediction`` (of ``image``) with the model's std calibration applied; unchanged without one."""
        cal = self.calibration
        if cal is None:
            return prediction
        checked = self.task.checked(image)
        return self._calibrate(prediction, cal, self.value_units(checked), checked, self._physics_maps(checked))

    def _calibrate(
        self,
        prediction: Prediction,
        cal: StdCalibration,
        units: list[float],
        checked: CheckedImage,
        physics: Callable[[int], np.ndarray | None],
    ) -> Prediction:
        single = checked.single
        planes = 1 if single else len(prediction.mean)  # fewer than the image's when a run was stopped and kept
        if prediction.samples is not None:  # fewer than asked when stopped and kept: their own scale
            cal = cal.for_samples(len(prediction.samples))
        maps = [physics(k) for k in range(planes)] if cal.physics_weight > 0 else None
        return calibrate_prediction(prediction, cal, units[:planes], single, maps)


def _calibrating(
    callback: ProgressCallback | None,
    cal: StdCalibration,
    units: list[float],
    physics_variance: Callable[[int], np.ndarray | None],
) -> ProgressCallback | None:
    """``callback`` with the partial results of a progressive run calibrated (their plane's unit and, where the
    calibration weighs it in, the task's physics variance: ``physics_variance(plane)``)."""
    if callback is None:
        return None

    def report(progress: SamplingProgress) -> Any:
        part = progress.partial
        if part is None:
            return callback(progress)
        physics = [physics_variance(part.plane)] if cal.physics_weight > 0 else None
        cal_part = cal.for_samples(part.done)
        calibrated = calibrate_prediction(part.prediction, cal_part, [units[part.plane]], True, physics)
        return callback(dataclasses.replace(progress, partial=dataclasses.replace(part, prediction=calibrated)))

    return report


def save_calibrated(model: CVDMModel, calibration: StdCalibration, path: str | Path) -> Path:
    """Write ``model`` (weights and metadata unchanged) with ``calibration`` recorded, to ``path``.

    Parameters
    ----------
    model
        A loaded model (its file is not modified unless ``path`` is that file).
    path
        Output ``.safetensors`` file.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: model files must end in .safetensors")
    meta = {**model.metadata, "format_version": FORMAT_VERSION, "calibration": calibration.to_dict()}
    return write_model_file(path, model.network, meta)


def bundled_model_path(name: str) -> Path:
    """Path of a bundled model file (:data:`BUNDLED`)."""
    return Path(str(files("napari_cvdm") / "weights" / f"{name}.safetensors"))


def load_model(name_or_path: str | Path, task: str | None = None) -> CVDMModel:
    """Load a bundled model (``"sr"``, ``"qpi"``) or a model file.

    Parameters
    ----------
    name_or_path
        ``"sr"``, ``"qpi"`` or the path of a ``.safetensors`` model file.
    task
        If given, the model must be for this task.

    Raises
    ------
    ModelFileError
        Missing file, a pickle-based file (refused before it is opened), corrupt
        or foreign safetensors, unsupported format version, wrong task, invalid
        optics, or weights that do not match the recorded architecture.
    """
    path = model_file_path(name_or_path, {name: bundled_model_path(name) for name in BUNDLED})
    read = read_model_file(path, task)
    return CVDMModel(read.network, read.task, read.normalization, read.optics, read.metadata, path)
