"""Calibrating the std: make ±1σ / ±2σ of a model's sample spread cover 68 / 95 % of its error.

The spread of a diffusion model's samples is a *relative* measure of doubt; on data unlike its training set it
is typically too small (the samples agree on a wrong answer). A calibration maps the sample std ``s`` of every
pixel to

    σ = √((a·s)² + (b·u)²)

with a scale ``a`` (how much larger the error is than the spread) and a floor ``b`` (an error the samples do
not show at all, e.g. in flat background), ``b`` in the network's normalised units and ``u`` the physical size
of one normalised unit for that image (:meth:`~napari_cvdm.tasks.Task.value_unit`: the input's intensity range
for ``sr``, 1 rad for ``qpi``).

With a ``smoothing`` radius ``r`` (pixels, :meth:`~napari_cvdm.tasks.Task.std_smoothing`), ``s²`` is first
averaged over a Gaussian window of that σ: the error's scale cannot change faster than the reconstruction's
resolution, and a few samples estimate each pixel's spread only roughly, so pooling neighbours ranks the pixels by
their error better. How far to pool is chosen on the calibration pairs
(:func:`~napari_cvdm.jobs.std_fit.fit_smoothing`: 1–4× that σ, the best ranking). Without it σ is a monotone function of
``s`` and the ranking of pixels does not change; only the coverage does.

Where the task knows from physics where the error is larger than the samples may show — a *physics variance*
``v`` at every output pixel (:meth:`~napari_cvdm.tasks.Task.physics_variance`: for ``sr`` the camera's
Poisson–Gaussian noise, for ``qpi`` the lowest modes, tilt and curvature, which two defocused planes barely
constrain) — the spread is joined by it with a weight ``k`` (:func:`~napari_cvdm.jobs.std_fit.fit_physics_weight`,
measured on the calibration pairs and kept only where it ranks the error better):

    σ = √(a²·(G_r(s²) + k²·v) + (b·u)²)

``a`` and ``b`` are fitted on held-out pairs (``napari-cvdm calibrate``, never the test seed) so that the pooled
pixels reach the Gaussian coverages at 1σ and 2σ (:mod:`napari_cvdm.jobs.std_fit`), recorded in the model file and
applied by ``predict``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.metrics import GAUSSIAN_COVERAGE, RELIABILITY_LEVELS, coverage, reliability

__all__ = [
    "GAUSSIAN_COVERAGE",
    "RELIABILITY_LEVELS",
    "StdCalibration",
    "smoothed_std",
    "smoothed_variance",
    "coverage",
    "reliability",
    "calibrate_prediction",
    "effective_std",
]


def smoothed_variance(std: np.ndarray, radius: float) -> np.ndarray:
    """The variance ``std²`` averaged over a Gaussian window of σ = ``radius`` pixels in the last two axes
    (``std`` ``(..., H, W)``; ``radius`` 0: not averaged), as one new float32 array.

    Made in place in that array: an 8192² result's calibration held five float64 copies (2.5 GB), which set the
    peak memory of the whole tiled run.
    """
    from scipy.ndimage import gaussian_filter

    v = np.square(np.asarray(std), dtype=np.float32)
    if radius > 0:
        sigma = (0.0,) * (v.ndim - 2) + (float(radius),) * 2
        gaussian_filter(v, sigma, output=v, mode="reflect")  # separable: each pass reads whole lines first
        np.maximum(v, 0.0, out=v)
    return v


def smoothed_std(std: np.ndarray, radius: float) -> np.ndarray:
    """The spread with its variance averaged over a Gaussian window of σ = ``radius`` pixels in the last two
    axes (:func:`smoothed_variance`), float32; ``radius`` 0: ``std`` unchanged."""
    if radius <= 0:
        return np.asarray(std)
    v = smoothed_variance(std, radius)
    return np.sqrt(v, out=v)


def effective_std(
    std: np.ndarray, smoothing: float, physics_variance: np.ndarray | None = None, physics_weight: float = 0.0
) -> np.ndarray:
    """``√(G_r(s²) + k²·v)``: the spread ``std`` with its variance averaged over σ = ``smoothing`` pixels and the
    physics variance ``physics_variance`` (same shape, squared units of ``std``) added with weight
    ``physics_weight`` = k (0: the spread alone), float32."""
    if physics_weight <= 0:
        return smoothed_std(std, smoothing).astype(np.float32, copy=False)
    if physics_variance is not None and np.shape(std) != np.shape(physics_variance):
        raise ValueError(
            f"a physics variance map of shape {np.shape(physics_variance)} for a std of shape {np.shape(std)}"
        )
    v = _joined_variance(std, smoothing, physics_variance, physics_weight)
    return np.sqrt(v, out=v)


def _joined_variance(
    std: np.ndarray, smoothing: float, physics_variance: np.ndarray | None, physics_weight: float
) -> np.ndarray:
    """``G_r(s²) + k²·v``: the spread's averaged variance and the physics variance weighed by ``k`` =
    ``physics_weight`` (0: ``G_r(s²)`` alone), one image-sized float32 array made in place (the weighted map is
    added a band of rows at a time, not as a second image-sized array)."""
    v = smoothed_variance(std, smoothing)
    if physics_weight > 0:
        if physics_variance is None:
            raise ValueError("this calibration weighs in a physics variance: pass its map")
        k2, extra = np.float32(physics_weight**2), np.broadcast_to(np.asarray(physics_variance, np.float32), v.shape)
        for i in range(0, v.shape[-2], 512):
            v[..., i : i + 512, :] += k2 * extra[..., i : i + 512, :]
    return v


@dataclass(frozen=True)
class StdCalibration:
    """``σ = √(scale²·(G_r(s²) + physics_weight²·v) + (floor·u)²)`` for a sample std ``s``, its variance averaged
    over a Gaussian of σ = ``smoothing`` pixels (``G_r``), the task's physics variance ``v`` at that pixel and an
    image's unit ``u`` (see module doc).

    Attributes
    ----------
    scale
        Multiplies the sample std (dimensionless, > 0).
    floor
        Error the samples do not show, in normalised units (≥ 0).
    fitted_on
        Provenance: pairs, classes, seed, samples, steps, coverage before and after.
    smoothing
        Radius of the variance's averaging window, output pixels (0: none; files without it: 0).
    scales
        The scale fitted for the mean and spread of fewer samples than ``fitted_on["samples"]`` (the running
        results of a progressive run: 2, 4, … samples), by number of samples; ``scale`` applies to the rest.
    physics_weight
        Weight of the task's physics variance beside the spread's (dimensionless, ≥ 0; files without it: 0, the
        spread alone).
    """

    scale: float = 1.0
    floor: float = 0.0
    fitted_on: dict[str, Any] = field(default_factory=dict)
    smoothing: float = 0.0
    scales: dict[int, float] = field(default_factory=dict)
    physics_weight: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"the std scale must be a positive number, got {self.scale}")
        if not (np.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"the std floor must be zero or positive, got {self.floor}")
        if not (np.isfinite(self.smoothing) and self.smoothing >= 0):
            raise ValueError(f"the std smoothing must be zero or a positive radius, got {self.smoothing}")
        if not (np.isfinite(self.physics_weight) and self.physics_weight >= 0):
            raise ValueError(f"the physics weight must be zero or positive, got {self.physics_weight}")

    def apply(self, std: np.ndarray, unit: float, physics_variance: np.ndarray | None = None) -> np.ndarray:
        """Calibrated std of one image (``std`` ``(..., H, W)``, physical units, averaged over its last two axes;
        ``unit`` the image's normalised unit in the same units; ``physics_variance`` the task's physics variance at
        each of those pixels, squared units, needed when :attr:`physics_weight` is not 0)."""
        v = _joined_variance(std, self.smoothing, physics_variance, self.physics_weight)  # float32, in place below
        v *= np.float32(self.scale**2)
        v += np.float32((self.floor * float(unit)) ** 2)
        return np.sqrt(v, out=v)

    def for_samples(self, n_samples: int) -> StdCalibration:
        """The calibration of a mean and spread of ``n_samples`` samples: the scale fitted at the largest count
        of :attr:`scales` not above it (the smallest when it is below all), ``self`` when there is none (or
        ``n_samples`` is at least the count the main scale was fitted at)."""
        if not self.scales:
            return self
        fitted = self.fitted_on.get("samples")
        last = int(fitted) if fitted is not None else max(self.scales) + 1  # where ``scale`` applies
        if n_samples >= last:
            return self
        counts = sorted(self.scales)
        below = [c for c in counts if c <= n_samples]
        return dataclasses.replace(self, scale=self.scales[below[-1] if below else counts[0]], scales={})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StdCalibration:
        """From a model file's ``calibration`` block (a ``ValueError`` names what is wrong, including entries this
        version does not know: dropping one could change the std silently)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"the std calibration has entries this napari-cvdm does not know ({', '.join(unknown)}); "
                "update napari-cvdm"
            )
        try:
            return cls(
                float(values["scale"]),
                float(values.get("floor", 0.0)),
                dict(values.get("fitted_on", {})),
                float(values.get("smoothing", 0.0)),
                {int(n): float(a) for n, a in dict(values.get("scales", {})).items()},  # JSON keys are strings
                float(values.get("physics_weight", 0.0)),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"invalid std calibration {values!r} ({err})") from None


def calibrate_prediction(
    prediction: Any,
    calibration: StdCalibration,
    units: Sequence[float],
    single: bool,
    physics_variances: Sequence[np.ndarray] | None = None,
) -> Any:
    """``prediction`` with its std calibrated; the spread of the samples stays in ``sample_std``.

    Parameters
    ----------
    prediction
        A :class:`~napari_cvdm.inference.predict.Prediction`.
    units
        Per plane: the physical size of one normalised unit.
    single
        Whether the prediction is one plane (its arrays have no plane axis).
    physics_variances
        Per plane: the task's physics variance at each output pixel (needed when the calibration weighs it in).
    """
    raw = prediction.sample_std if prediction.sample_std is not None else prediction.std
    planes = [raw] if single else list(raw)
    if len(planes) != len(units):
        raise ValueError(f"{len(units)} units for {len(planes)} planes")
    maps = _maps(physics_variances, planes)
    std = [calibration.apply(r, u, v) for r, u, v in zip(planes, units, maps)]
    return dataclasses.replace(prediction, std=std[0] if single else np.stack(std), sample_std=raw)


def _maps(physics_variances: Sequence[np.ndarray] | None, stds: Sequence[np.ndarray]) -> Sequence[np.ndarray | None]:
    """``physics_variances``, or one ``None`` per image."""
    if physics_variances is None:
        return [None] * len(stds)
    if len(physics_variances) != len(stds):
        raise ValueError(f"{len(physics_variances)} physics variance maps for {len(stds)} std maps")
    return physics_variances
