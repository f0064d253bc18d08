"""The one door of every reconstruction: what the command line, the widgets, the batch jobs, ``evaluate`` and
``calibrate`` take (:class:`Reconstructor`) — a model (:class:`~napari_cvdm.inference.models.CVDMModel`), a model run
at other optics (:mod:`napari_cvdm.inference.optics_match`), a classical method
(:class:`~napari_cvdm.inference.classical.ClassicalMethod`) or any of them taking camera planes
(:class:`~napari_cvdm.inference.brightfield_input.BrightfieldInput`).

An image goes in through :meth:`Reconstructor.given`, which checks it once into a typed value (for most
reconstructors the task's :class:`~napari_cvdm.tasks.records.CheckedImage`, with the pixel size its file or layer
states); :meth:`Reconstructor.predict_with` takes that value (or a plain array, which it checks first) and gives the
result with its consistency check, and with a warning where the stated pixel size is far from the optics used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..diffusion.sampler import ProgressCallback
from ..physics.optics import Optics
from ..tasks import Task
from ..tasks.records import outer_defocus
from .predict import Prediction, SamplingOptions

__all__ = ["Predicts", "Reconstructor"]


class Predicts:
    """``given(image, pixel_um)`` and ``predict(image, n_samples, …)`` for a reconstructor that has a ``task`` and
    ``predict_with(image, SamplingOptions, callback)``."""

    task: Task

    def given(self, image: Any, pixel_um: Sequence[float] | None = None, plane_spacing_um: float | None = None) -> Any:
        """``image`` checked once by the task, with its pixel size (y, x) in µm where known and, for brightfield
        pairs ``(…, 2, H, W)``, the spacing of their two planes (µm; their defocus is half of it) (``ValueError``
        with a message for the user where it cannot be reconstructed)."""
        dz = outer_defocus(2, plane_spacing_um) if self.task.brightfield else None
        return self.task.checked(image, pixel_um, dz)

    def predict_with(
        self, image: Any, options: SamplingOptions, callback: ProgressCallback | None = None
    ) -> Prediction:
        raise NotImplementedError

    def predict(
        self,
        image: np.ndarray,
        n_samples: int = 8,
        steps: int | None = None,
        seed: int = 0,
        device: str = "auto",
        tile_size: int | None = None,
        callback: ProgressCallback | None = None,
    ) -> Prediction:
        """Reconstruct an image: mean and per-pixel std of ``n_samples`` samples.

        Parameters
        ----------
        image
            ``sr``: ``(H, W)`` or a stack ``(Z|T, H, W)``. ``qpi``: ``(2, H, W)``
            ordered (−dz, +dz), or ``(T, 2, H, W)``.
        n_samples
            Samples per image (≥ 1; the std needs ≥ 2).
        steps
            Sampling steps (default: the model's).
        seed
            Random seed: the same seed gives the same result.
        device
            ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
        tile_size
            Tile side on the input grid for large images; ``None`` tiles only when the image does not fit the
            memory budget. Tiles overlap and are blended at every sampling step, so results have no seams.
        callback
            Progress callback (see :mod:`napari_cvdm.diffusion.sampler`); returning
            ``False`` cancels with :class:`~napari_cvdm.diffusion.SamplingCancelled`.
        """
        return self.predict_with(image, SamplingOptions(n_samples, steps, seed, device, tile_size), callback)


@runtime_checkable
class Reconstructor(Protocol):
    """What reconstructs an image (see the module's text): the one door the command line, the widgets and the batch
    jobs go through."""

    label: str  #: what result layers are called after (``CVDM``, ``TIE``, …)
    stochastic: bool  #: whether it draws samples (its std is their spread)
    task: Task
    optics: Optics
    name: str

    def given(self, image: Any, pixel_um: Sequence[float] | None = None, plane_spacing_um: float | None = None) -> Any:
        """``image`` checked once into what :meth:`predict_with` takes, with its pixel size (µm) and the spacing of
        its focal planes (µm; brightfield planes) where known."""
        ...

    def predict_with(
        self, image: Any, options: SamplingOptions | None = None, callback: ProgressCallback | None = None
    ) -> Prediction:
        """Mean, std and the consistency check of ``image`` (a plain array, or what :meth:`given` made of it)."""
        ...
