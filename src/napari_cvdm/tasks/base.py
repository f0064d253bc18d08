"""The task interface: everything that differs between super-resolution and phase imaging.

Code outside ``napari_cvdm.tasks`` never asks *which* task it has; it asks the task object (see
docs/architecture.md). A new task is a new subclass of :class:`Task` registered in
:data:`napari_cvdm.tasks.TASKS`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.metrics import Scores
from ..data.normalize import Normalization
from ..physics.optics import Optics, optics_option_names
from .inputs import MIN_SIDE, TaskInputs
from .records import (
    RESIDUAL_LIMIT,
    CheckedImage,
    Conditioned,
    Consistency,
    MethodNote,
    interior_rms,
    run_noting,
    times_off,
)

__all__ = [
    "Task",
    "CheckedImage",
    "Conditioned",
    "Consistency",
    "Method",
    "MethodNote",
    "run_noting",
    "MIN_SIDE",
    "RESIDUAL_LIMIT",
    "PIXEL_SIZE_TOLERANCE",
    "interior_rms",
]


#: A known pixel size further than this factor from the model's is warned about.
PIXEL_SIZE_TOLERANCE = 1.5

#: A reconstruction method: ``input → (mean, std or None)``.
Method = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]


class Task(TaskInputs, ABC):
    """What one reconstruction task is: its inputs, conditions, optics, data, baselines, scores and layers.

    Class attributes
    ----------------
    name
        ``"sr"`` or ``"qpi"`` (model files record it).
    title
        Human-readable name.
    gain
        Output pixels per input pixel along each axis.
    input_planes
        Images per input position: 1 (widefield) or 2 (defocused pair).
    optics_class
        The optics dataclass of the task.
    value_units
        Units of the reconstruction.
    classes, test_only_classes
        Structure classes / phase sources of the simulator used for training, and those kept for tests.
    train_size, eval_size, simulate_size
        Default simulated input sides (pixels) for training, evaluation and ``simulate``.
    patch_size
        Default training patch side on the input grid.
    space_to_depth
        Pixel-unshuffle factor of new networks.
    baseline_parameter
        What :meth:`tune_baselines` chooses (for messages).
    brightfield
        Whether the input is brightfield planes a camera writes (through-focus stacks, raw counts and an image of
        the empty field: :mod:`~napari_cvdm.physics.brightfield`).
    reads_optics_off_image
        Whether :meth:`estimated_optics` reads what a pixel size leaves open off the image (sr: the cut-off).
    variants
        Named variants of the simulator (:meth:`simulate`'s ``variant``: kinds of images a training run can mix in at
        a share and ``evaluate --variant`` can hold out).
    ranges_added_later
        Keys of :meth:`simulation_ranges` that the simulator gained after model files were first written, each with
        what a file that does not record it was trained with (``None``: nothing of the kind).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    gain: ClassVar[int]
    input_planes: ClassVar[int]
    optics_class: ClassVar[type[Optics]]
    value_units: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    test_only_classes: ClassVar[tuple[str, ...]] = ()
    train_size: ClassVar[int]
    eval_size: ClassVar[int]
    simulate_size: ClassVar[int]
    patch_size: ClassVar[int]
    space_to_depth: ClassVar[int]
    baseline_parameter: ClassVar[str]
    brightfield: ClassVar[bool] = False
    reads_optics_off_image: ClassVar[bool] = False
    variants: ClassVar[tuple[str, ...]] = ()
    ranges_added_later: ClassVar[dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"<task {self.name}: {self.title}>"

    @abstractmethod
    def pair_shape_error(self, inp: np.ndarray, tgt: np.ndarray) -> str | None:
        """Why ``(inp, tgt)`` is not one training pair of this task (``None`` when the shapes fit)."""

    # ------------------------------------------------------------------ optics and normalisation

    def default_optics(self) -> Optics:
        """The bundled model's optics."""
        return self.optics_class()

    def optics_from_dict(self, values: dict[str, Any] | None) -> Optics:
        """Optics recorded in a model file or simulation record (``None``/empty: the defaults)."""
        return self.optics_class.from_dict(dict(values or {}))

    def optics_with(self, values: dict[str, Any], base: Optics | None = None) -> Optics:
        """``base`` (default: the task's optics) with some fields changed.

        Raises
        ------
        ValueError
            A field the task's optics does not have (e.g. ``dz_um`` for ``sr``), or a value out of range.
        """
        base = base or self.default_optics()
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(base)})
        if unknown:
            option = optics_option_names()
            own = [f.metadata["cli"] for f in dataclasses.fields(base) if "cli" in f.metadata]
            raise ValueError(
                f"{', '.join(option.get(u, u) for u in unknown)} does not apply to {self.name} ("
                f"{self.title}); its optics are set with {', '.join(own)}"
            )
        return base.replace(**values)

    @abstractmethod
    def default_normalization(self, optics: Optics | None = None) -> Normalization:
        """How new models of this task scale inputs and targets."""

    @abstractmethod
    def cond_channels(self, norm: Normalization) -> int:
        """Channels of the condition the network receives."""

    # ------------------------------------------------------------------ conditions

    @abstractmethod
    def condition(self, plane: np.ndarray, norm: Normalization, device: torch.device) -> Conditioned:
        """One input plane (from :meth:`check_input`) → condition and the way back to physical units."""

    @abstractmethod
    def value_unit(self, plane: np.ndarray, norm: Normalization) -> float:
        """The physical size of one normalised unit of the network's output for ``plane`` (what a calibrated
        std floor is measured in; :mod:`napari_cvdm.inference.uncertainty`)."""

    @abstractmethod
    def normalized_patch(
        self, inp: np.ndarray, tgt: np.ndarray, norm: Normalization, y0: int, x0: int, p: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``p``-pixel training patch at input pixel ``(y0, x0)``, normalised: ``(condition, target)`` on
        the input grid (the target on its own grid)."""

    @abstractmethod
    def collate(
        self, conds: torch.Tensor, targets: torch.Tensor, norm: Normalization
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked patches → the network's condition ``x`` and what it learns ``y`` (``(B, C, h, w)``)."""

    # ------------------------------------------------------------------ data and evaluation

    def default_classes(self, with_images: bool = False) -> list[str]:
        """Classes a simulated training set cycles through."""
        return list(self.classes)

    def check_classes(self, names: Sequence[str] | None, with_images: bool = False) -> list[str] | None:
        """``names`` when every one is a class of this task (training or test-only), ``None`` for none given.

        Raises
        ------
        ValueError
            An unknown class, or images asked for without an image folder.
        """
        if not names:
            return None
        known = [*self.default_classes(with_images=True), *self.test_only_classes]
        bad = [c for c in names if c not in known]
        if bad:
            raise ValueError(f"unknown class(es) {', '.join(bad)} for {self.name}; choose from {', '.join(known)}")
        if not with_images and "images" in names:
            raise ValueError("the class 'images' needs a folder of images (--images DIR)")
        return list(names)

    @abstractmethod
    def simulate(
        self,
        cls: str,
        size: int,
        rng: np.random.Generator,
        optics: Optics | None = None,
        images: Sequence[np.ndarray] | None = None,
        level: float | None = None,
        variant: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One simulated ``(input, target)`` pair of class ``cls`` with ``size``-pixel inputs (``level``: a fixed
        signal level where the task has one — ``sr`` photons per pixel, ``qpi`` the noise σ —, else drawn as for
        training; ``variant``: one of :meth:`held_out_conditions`' variants, else drawn)."""

    def variant_error(self, variant: str | None) -> str | None:
        """Why :meth:`simulate` cannot draw ``variant`` (``None``: no variant, or one of :attr:`variants`)."""
        if variant is None or variant in self.variants:
            return None
        known = " and ".join(
            [", ".join(self.variants[:-1]), *self.variants[-1:]] if self.variants[1:] else self.variants
        )
        return f"the {self.name} simulator's variants are {known or 'none'}, not {variant!r}"

    def held_out_conditions(self) -> list[tuple[str, float | None, str | None]]:
        """The imaging conditions a held-out set covers per class: ``(tag, level, variant)`` for
        :meth:`simulate`; the tag names a group of the evaluation table (``""``: no group of its own)."""
        return [("", None, None)]

    @abstractmethod
    def simulation_ranges(self) -> dict[str, Any]:
        """What the simulator draws from (signal or noise ranges), for the training record of model files."""

    @abstractmethod
    def baselines(self, optics: Optics | None = None, parameter: float | None = None) -> dict[str, Method]:
        """The classical methods, by display name (``parameter``: see :attr:`baseline_parameter`)."""

    def camera_methods(
        self, optics: Optics | None = None
    ) -> dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]]:
        """Classical methods, by label, that take the camera's planes as they are — every plane of a through-focus
        stack ``(N, H, W)``, and a mask of the pixels that carry data (``None``: all) — rather than the pair the
        task takes (none unless a task says so)."""
        return {}

    @abstractmethod
    def tune_baselines(self, examples: Sequence[Any], optics: Optics | None = None) -> tuple[float, dict[float, float]]:
        """The baseline parameter with the best mean PSNR on ``examples`` and the PSNR of every candidate."""

    @abstractmethod
    def scores(self, estimate: np.ndarray, target: np.ndarray) -> Scores:
        """PSNR and SSIM as the task defines them."""

    @abstractmethod
    def error(self, estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Per-pixel error in the units the std is in."""

    def std_smoothing(self, optics: Optics) -> float:
        """Radius (output pixels) over which a calibration averages the samples' variance
        (:func:`~napari_cvdm.inference.uncertainty.smoothed_std`): the scale of the error changes no faster than the
        reconstruction's resolution. 0 (none) unless the task says otherwise."""
        return 0.0

    #: What :meth:`physics_variance` describes, for people ("the camera's noise"); empty: the task has none.
    physics_variance_label: ClassVar[str] = ""

    def physics_variance(self, plane: np.ndarray, optics: Optics) -> np.ndarray | None:
        """Where physics expects the error of a reconstruction of ``plane`` to be larger than the samples' spread
        may show, as a variance at every output pixel (output units², the output's shape), up to the weight a
        calibration fits (:mod:`napari_cvdm.inference.uncertainty`); ``None`` (the default): the task has no such map
        and its calibration is the samples' spread and a floor."""
        return None

    @abstractmethod
    def consistency(self, plane: np.ndarray, estimate: np.ndarray, optics: Optics) -> Consistency:
        """Push ``estimate`` (one output plane) through the forward model of ``optics`` and compare it with
        ``plane`` (one input plane) in units of the noise; warn where it does not explain the input."""

    def quick_consistency(self, plane: np.ndarray, estimate: np.ndarray, optics: Optics) -> Consistency:
        """:meth:`consistency` at a fraction of its cost, for fast methods; the full check where the task has no
        quicker one."""
        return self.consistency(plane, estimate, optics)

    # ------------------------------------------------------------------ layers

    def distribution_warnings(self, plane: np.ndarray, optics: Optics, ranges: dict[str, Any] | None) -> list[str]:
        """Plain-text warnings when one input plane lies outside what the model was trained on, measured on the
        image itself (each names what to change); none by default.

        Parameters
        ----------
        optics
            The model's optics.
        ranges
            The imaging conditions the model was trained on (:meth:`simulation_ranges` as recorded in its file),
            or ``None`` when unknown (trained on the user's own pairs).
        """
        return []

    def undersampling_remark(self, optics: Optics) -> str | None:
        """The task's warning for an image whose pixels look larger than the model's, judged from the image
        alone (``None``: the task has none). A known pixel size (:meth:`pixel_size_warning`) says it better."""
        return None

    def display(self, values: np.ndarray) -> tuple[str, tuple[float, float] | None]:
        """How a reconstruction is shown: a colormap and contrast limits (``None``: the layers' robust
        percentiles)."""
        return "gray", None

    def similarity_scale(self, model_optics: Optics, optics: Optics) -> float:
        """How much to enlarge an image taken with ``optics`` so that it looks as if taken with ``model_optics``
        (its pixels become ``1/scale`` of their size): the factor that makes the physics of both the same. ``1``
        for equal optics; a task without such a similarity refuses other optics.

        Raises
        ------
        ValueError
            The task cannot map one optics onto the other.
        """
        if optics == model_optics:
            return 1.0
        raise ValueError(f"{self.name} models run only at the optics they were trained for")

    def estimated_optics(self, plane: np.ndarray, optics: Optics) -> Optics | None:
        """``optics`` with what the image itself tells of them (one input plane), or ``None`` where the task reads
        nothing off an image."""
        return None

    def optics_disagreement(self, plane: np.ndarray, optics: Optics) -> str | None:
        """A warning when what the image tells of its optics (:meth:`estimated_optics`) contradicts ``optics``."""
        return None

    def draw_optics(self, rng: np.random.Generator, base: Optics) -> Optics:
        """Optics drawn over the range a model of this task is meant to cover (for training across optics).

        Raises
        ------
        ValueError
            The task has no such range.
        """
        raise ValueError(f"{self.name} models are not trained across optics")

    def similarity_range(self) -> tuple[float, float]:
        """The enlargements :meth:`similarity_scale` may use without a warning that the image lies outside what
        the model covers."""
        return (1.0, 1.0)

    def pixel_size_warning(self, pixel_um: Sequence[float] | None, optics: Optics) -> str | None:
        """A warning when the image's known pixel size ``(y, x)`` (µm; from its file or layer) is more than
        :data:`PIXEL_SIZE_TOLERANCE` times off the pixel size of ``optics`` (those the run used: the ones given, or
        the method's own), else ``None`` (also for an unknown size)."""
        if not pixel_um:
            return None
        px, want = float(pixel_um[-1]), float(optics.pixel_um)
        if times_off(px, want) <= PIXEL_SIZE_TOLERANCE:
            return None
        fresnel = (
            " with --dz and --wavelength: the Fresnel number p²/(λ·dz) needs all three"
            if "dz_um" in optics.to_dict()
            else ""
        )
        return (
            f"the image's pixels are {px * 1000:.1f} nm (from its file or layer), but this run took them as "
            f"{want * 1000:.1f} nm ({px / want:.2g}×; the pixel size given, or the method's own): give the right one "
            f"(--pixel-size {px:g}{fresnel}; or the optics form)"
        )

    @abstractmethod
    def output_geometry(
        self, scale: Sequence[float], translate: Sequence[float], plane_axis: bool
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Scale and translate of the output layers from the input layer's (one value per axis; µm or
        pixels). ``plane_axis``: the input carries its defocus planes on axis ``-3``."""

    def output_pixel_size(self, pixel_um: tuple[float, float] | None) -> tuple[float, float] | None:
        """Pixel size ``(y, x)`` of the output, µm."""
        return None if pixel_um is None else (pixel_um[0] / self.gain, pixel_um[1] / self.gain)
