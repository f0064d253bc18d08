"""What a task accepts as input: the shapes of its planes, the checks every input passes once, and the checked value
(:class:`~napari_cvdm.tasks.records.CheckedImage`) every later step takes."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .records import CheckedImage, pixel_yx

__all__ = ["TaskInputs", "MIN_SIDE"]

#: Smallest image side (pixels) any task accepts.
MIN_SIDE = 16


class TaskInputs(ABC):
    """The input half of a :class:`~napari_cvdm.tasks.base.Task`: ``input_planes`` images per position (1: widefield,
    2: a defocused pair), any number of positions (a stack)."""

    input_planes: ClassVar[int]

    @property
    def plane_ndim(self) -> int:
        """Dimensions of one input plane: 2 ``(H, W)`` or 3 ``(2, H, W)``."""
        return 2 if self.input_planes == 1 else 3

    def is_single(self, image: np.ndarray) -> bool:
        """Whether ``image`` is one plane (not a stack)."""
        return np.ndim(image) == self.plane_ndim

    def checked(
        self, image: np.ndarray | CheckedImage, pixel_um: Sequence[float] | None = None, dz_um: float | None = None
    ) -> CheckedImage:
        """``image`` checked (:meth:`check_input`) into the value every step of a reconstruction takes; one already
        checked is returned as it is (given ``pixel_um``, the pixel size (y, x) in µm, or ``dz_um``, the stated
        defocus of brightfield planes, where it had none).

        Raises
        ------
        ValueError
            As :meth:`check_input`.
        """
        pixel = pixel_yx(pixel_um)
        if isinstance(image, CheckedImage):
            if (pixel is None or image.pixel_um is not None) and (dz_um is None or image.dz_um is not None):
                return image
            return dataclasses.replace(image, pixel_um=image.pixel_um or pixel, dz_um=image.dz_um or dz_um)
        return CheckedImage(self.check_input(image), self.is_single(image), pixel, dz_um)

    @abstractmethod
    def _as_planes(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` as a stack of planes ``(P, ...)``, or a ``ValueError`` naming the expected shapes."""

    def check_input(self, image: np.ndarray) -> np.ndarray:
        """Validate an input array; return it as float64 planes ``(P, H, W)`` or ``(P, 2, H, W)`` (a copy).

        Raises
        ------
        ValueError
            Not numeric, wrong shape, smaller than :data:`MIN_SIDE`, or non-finite values.
        """
        arr = np.asarray(image)
        if arr.dtype.kind not in "iufb":
            raise ValueError(f"the image has data type {arr.dtype}; a numeric image is needed")
        arr = self._as_planes(arr.astype(np.float64))
        if min(arr.shape[-2:]) < MIN_SIDE:
            raise ValueError(
                f"the image is {arr.shape[-2]}×{arr.shape[-1]} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed"
            )
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ValueError(
                f"the image contains {bad} NaN or infinite values; replace them (e.g. with the "
                "background level) before reconstruction"
            )
        return arr
