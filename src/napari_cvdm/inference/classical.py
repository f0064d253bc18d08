"""Classical methods (TIE, iterative phase retrieval with or without the flat-background prior, bicubic,
Richardson–Lucy) behind the interface of a model, so that users run them beside CVDM on their own data (the
Reconstruct widget lists them).

They return a :class:`~napari_cvdm.inference.predict.Prediction` with the same consistency check as a model; their std
is zero (one deterministic estimate, no uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..diffusion.sampler import ProgressCallback, SamplingCancelled, SamplingProgress
from ..physics.optics import Optics
from ..tasks import TASKS, Method, Task
from ..tasks.base import run_noting
from ..tasks.records import CheckedImage
from .consistency import check_consistency, check_consistency_quickly, with_warnings
from .predict import Prediction, SamplingOptions
from .reconstructor import Predicts

__all__ = ["ClassicalMethod", "classical_methods", "CLASSICAL_NAMES", "classical_method", "load_method"]

#: Command-line names of the classical methods: ``name → (task, prefix of the baseline's display name)``.
CLASSICAL_NAMES = {
    "tie": ("qpi", "TIE"),
    "iterative": ("qpi", "iterative"),
    "flat-background": ("qpi", "flat-background"),
    "bicubic": ("sr", "bicubic"),
    "richardson-lucy": ("sr", "richardson-lucy"),
}

#: Methods (by label) checked with the task's quick check: the full one would cost a hundred times the method.
QUICK_CHECKED = frozenset({"TIE"})


@dataclass
class ClassicalMethod(Predicts):
    """A classical reconstruction of one task with fixed optics.

    Attributes
    ----------
    name
        Display name, e.g. ``"TIE (alpha=0.1/um^2)"``.
    task, optics
        What it reconstructs and through which optics (the forward model of the consistency check).
    method
        ``plane → (mean, std or None)`` (:meth:`Task.baselines`).
    label
        What result layers are called after (``<input> TIE mean``).
    """

    name: str
    task: Task
    optics: Optics
    method: Method
    label: str
    path: Any = None
    default_steps: int = 1
    #: One deterministic estimate: no samples, no steps.
    stochastic: ClassVar[bool] = False

    def with_optics(self, optics: Optics) -> ClassicalMethod:
        """The same method through other optics (e.g. the user's dz and pixel size)."""
        name, method = next((k, m) for k, m in self.task.baselines(optics).items() if k.startswith(self.label))
        return ClassicalMethod(name, self.task, optics, method, self.label)

    def predict_with(
        self,
        image: np.ndarray | CheckedImage,
        options: SamplingOptions | None = None,
        callback: ProgressCallback | None = None,
    ) -> Prediction:
        """Reconstruct ``image`` (one plane or a stack) plane by plane; ``options`` are ignored (nothing is
        sampled); ``callback`` reports planes done and cancels between planes and after the last."""
        checked = self.task.checked(image)
        planes = checked.planes
        means, notes = [], []
        for k, plane in enumerate(planes):
            if callback is not None and callback(SamplingProgress(k, len(planes))) is False:
                raise SamplingCancelled("cancelled")
            means.append(np.asarray(run_noting(self.method, plane, notes)[0], np.float32))
        if callback is not None and callback(SamplingProgress(len(planes), len(planes))) is False:
            raise SamplingCancelled("cancelled")  # asked while the last plane ran: no result, as for a model
        mean = np.stack(means)
        mean = mean[0] if checked.single else mean
        prediction = Prediction(mean=mean, std=np.zeros_like(mean))
        prediction = with_warnings(prediction, notes)  # once each
        if self.label in QUICK_CHECKED:
            return check_consistency_quickly(prediction, self.task, self.optics, checked)
        return check_consistency(prediction, self.task, self.optics, checked)


def classical_methods(task: Task | None = None) -> list[ClassicalMethod]:
    """The classical methods of one task (or of every task), with the task's default (bundled) optics."""
    tasks = [task] if task is not None else list(TASKS.values())
    out = []
    for t in tasks:
        optics = t.default_optics()
        out += [
            ClassicalMethod(name, t, optics, method, name.split()[0]) for name, method in t.baselines(optics).items()
        ]
    return out


def classical_method(name: str, optics: dict[str, Any] | None = None) -> ClassicalMethod:
    """A classical method by its command-line name (:data:`CLASSICAL_NAMES`), with the task's default optics
    changed by ``optics`` (field name → value, e.g. ``{"dz_um": 10.0}``)."""
    from ..tasks import get_task

    task_name, prefix = CLASSICAL_NAMES[name]
    task = get_task(task_name)
    default = next(m for m in classical_methods(task) if m.label == prefix)
    return default.with_optics(task.optics_with(optics or {}))


def load_method(name: str, optics: dict[str, Any] | None = None, flat_field: str | None = None) -> Any:
    """What ``predict --model NAME`` runs: a classical method (:data:`CLASSICAL_NAMES`, with ``optics``), or a
    model (bundled name or file), run at ``optics`` by physics similarity when they differ from its own
    (:func:`~napari_cvdm.inference.optics_match.at_optics`; given the pixel size alone, the rest is read off each image:
    :func:`~napari_cvdm.inference.optics_match.at_image_optics`). A qpi one takes camera planes
    (:func:`~napari_cvdm.inference.brightfield_input.with_brightfield_input`: stacks, raw counts divided by
    ``flat_field``)."""
    from .brightfield_input import with_brightfield_input
    from .models import load_model
    from .optics_match import model_at

    if name in CLASSICAL_NAMES:
        return with_brightfield_input(classical_method(name, optics), flat_field)
    return with_brightfield_input(model_at(load_model(name), optics or {}), flat_field)
