"""Classical methods (TIE, iterative phase retrieval, bicubic, Richardson–Lucy) behind the interface of a model,
so that users run them beside CVDM on their own data (the Reconstruct widget lists them).

They return a :class:`~napari_cvdm.predict.Prediction` with the same consistency check as a model; their std is
zero (one deterministic estimate, no uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .diffusion.sampler import ProgressCallback, SamplingCancelled, SamplingProgress
from .physics.optics import Optics
from .predict import Prediction, SamplingOptions, check_consistency
from .tasks import TASKS, Method, Task

__all__ = ["ClassicalMethod", "classical_methods"]


@dataclass
class ClassicalMethod:
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

    def predict_with(
        self, image: np.ndarray, options: SamplingOptions | None = None, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Reconstruct ``image`` (one plane or a stack) plane by plane; ``options`` are ignored (nothing is
        sampled); ``callback`` reports planes done and cancels between planes."""
        planes = self.task.check_input(image)
        means = []
        for k, plane in enumerate(planes):
            if callback is not None and callback(SamplingProgress(k, len(planes))) is False:
                raise SamplingCancelled("cancelled")
            means.append(np.asarray(self.method(plane)[0], np.float32))
        mean = np.stack(means)
        mean = mean[0] if self.task.is_single(image) else mean
        prediction = Prediction(mean=mean, std=np.zeros_like(mean))
        return check_consistency(prediction, self.task, self.optics, image)


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
