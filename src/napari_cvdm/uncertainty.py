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
resolution, and 8 samples estimate each pixel's spread to only ±27 %, so pooling neighbours ranks the pixels by
their error better (sr validation scenes, 8 samples: Spearman ρ 0.26 → 0.35 at the target PSF's σ). How far
to pool is chosen on the calibration pairs (:func:`fit_smoothing`: 1–4× that σ, the best ranking; the bundled sr's
held-out scenes: ρ 0.37 at 1×, 0.43 at 3×). Without it σ is a monotone function of ``s`` and the ranking of pixels
does not change; only the coverage does.

Where the task knows from physics where the error is larger than the samples may show — a *physics variance*
``v`` at every output pixel (:meth:`~napari_cvdm.tasks.Task.physics_variance`: for ``sr`` the camera's
Poisson–Gaussian noise, for ``qpi`` the lowest modes, tilt and curvature, which two defocused planes barely
constrain) — the spread is joined by it with a weight ``k`` (:func:`fit_physics_weight`, measured on the
calibration pairs and kept only where it ranks the error better):

    σ = √(a²·(G_r(s²) + k²·v) + (b·u)²)

On the bundled models' validation pairs the mean Spearman ρ(σ, |error|) rises from 0.40 to 0.45 (sr) and from
0.39 to 0.43 (qpi).

``a`` and ``b`` are fitted on held-out pairs (``napari-cvdm calibrate``, never the test seed) so that the pooled
pixels reach the Gaussian coverages at 1σ and 2σ, recorded in the model file and applied by ``predict``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GAUSSIAN_COVERAGE",
    "RELIABILITY_LEVELS",
    "StdCalibration",
    "smoothed_std",
    "smoothed_variance",
    "coverage",
    "reliability",
    "fit_calibration",
    "fit_scale",
    "fit_smoothing",
    "SMOOTHING_FACTORS",
    "PHYSICS_WEIGHT_FACTORS",
    "calibrate_prediction",
    "effective_std",
    "fit_physics_weight",
    "fit_smoothing_and_weight",
]

#: Fraction of a Gaussian within ±1σ and ±2σ.
GAUSSIAN_COVERAGE = {1: 0.6827, 2: 0.9545}

#: Multiples of a task's smoothing radius among which :func:`fit_smoothing` chooses.
SMOOTHING_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)

#: Multiples of the likeliest physics weight among which :func:`fit_physics_weight` chooses (steps of √3 chose
#: a weight that ranked the qpi validation pairs better and the test pairs worse: ρ 0.348 against 0.354).
PHYSICS_WEIGHT_FACTORS = (1 / 30, 1 / 10, 1 / 3, 1.0, 3.0, 10.0, 30.0)

#: Nominal central-interval probabilities of the reliability diagram.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


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


def coverage(std: np.ndarray, error: np.ndarray, k: float) -> float:
    """Fraction of pixels with ``|error| ≤ k·std`` (same shapes)."""
    return float(np.mean(np.abs(np.asarray(error, np.float64)) <= k * np.asarray(std, np.float64)))


def reliability(std: np.ndarray, error: np.ndarray, levels: Sequence[float] = RELIABILITY_LEVELS) -> tuple[float, ...]:
    """Observed coverage of the central Gaussian intervals of probability ``levels`` (a reliability diagram:
    a calibrated std gives ``observed == levels``)."""
    from scipy.stats import norm

    return tuple(coverage(std, error, float(norm.ppf(0.5 + p / 2))) for p in levels)


def _pooled(
    stds: Sequence[np.ndarray], errors: Sequence[np.ndarray], units: Sequence[float], max_pixels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(std, |error|)`` of all images in normalised units, subsampled to ``max_pixels`` (float64 1-D)."""
    if not (len(stds) == len(errors) == len(units)) or not stds:
        raise ValueError("calibration needs as many std maps, error maps and units as images (at least one)")
    s = np.concatenate([np.ravel(np.asarray(x, np.float64)) / u for x, u in zip(stds, units)])
    e = np.concatenate([np.ravel(np.abs(np.asarray(x, np.float64))) / u for x, u in zip(errors, units)])
    if s.shape != e.shape:
        raise ValueError("each std map must have its error map's shape")
    if s.size > max_pixels:
        idx = np.random.default_rng(seed).choice(s.size, max_pixels, replace=False)
        s, e = s[idx], e[idx]
    return s, e


def _scale_for(s: np.ndarray, e: np.ndarray, floor: float, target: float, k: float) -> float:
    """The smallest scale at which ``k·√((a·s)² + floor²)`` covers ``target`` of the pixels (bisection in log a)."""
    lo, hi = 1e-4, 1e4
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        if np.mean(e <= k * np.sqrt((mid * s) ** 2 + floor**2)) >= target:
            hi = mid
        else:
            lo = mid
    return float(hi)


def fit_scale(
    stds: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    units: Sequence[float],
    calibration: StdCalibration,
    max_pixels: int = 400_000,
    seed: int = 0,
    physics_variances: Sequence[np.ndarray] | None = None,
) -> float:
    """The scale that makes ``calibration`` (its floor, smoothing and physics weight kept) cover 95.45 % within ±2σ
    of these errors — e.g. of the means of fewer samples than it was fitted on (arguments as
    :func:`fit_calibration`)."""
    c = calibration
    smoothed = [
        effective_std(x, c.smoothing, v, c.physics_weight) for x, v in zip(stds, _maps(physics_variances, stds))
    ]
    s, e = _pooled(smoothed, errors, units, max_pixels, seed)
    return _scale_for(s, e, calibration.floor, GAUSSIAN_COVERAGE[2], 2.0)


def fit_calibration(
    stds: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    units: Sequence[float],
    smoothing: float = 0.0,
    max_pixels: int = 400_000,
    seed: int = 0,
    physics_variances: Sequence[np.ndarray] | None = None,
    physics_weight: float = 0.0,
) -> StdCalibration:
    """Scale and floor that make the pooled pixels reach 95.45 % within ±2σ and, as near as the floor allows,
    68.27 % within ±1σ.

    Parameters
    ----------
    stds, errors
        Per image: the sample std and the error of the mean (:meth:`~napari_cvdm.tasks.Task.error`), same
        shapes ``(H, W)``, physical units.
    units
        Per image: the physical size of one normalised unit (:meth:`~napari_cvdm.tasks.Task.value_unit`).
    smoothing
        Radius (pixels) of the variance's averaging window the calibration applies (:func:`smoothed_std`).
    physics_variances, physics_weight
        Per image: the task's physics variance at each pixel (squared physical units), and its weight beside the
        spread (:func:`fit_physics_weight`; 0: the spread alone, the maps are not needed).

    Returns
    -------
    StdCalibration
        ``fitted_on`` holds the pixels used, the 1σ/2σ coverage before and after, and ``spread_share``: the
        mean fraction of the calibrated variance that comes from the samples' spread (near 0: the std is
        mostly the floor, the spread does not track the error).
    """
    eff = [effective_std(x, smoothing, v, physics_weight) for x, v in zip(stds, _maps(physics_variances, stds))]
    s, e = _pooled(eff, errors, units, max_pixels, seed)
    if not np.any(e > 0):
        raise ValueError("the errors are all zero: nothing to calibrate against")
    target1, target2 = GAUSSIAN_COVERAGE[1], GAUSSIAN_COVERAGE[2]
    typical = float(np.quantile(e, target2)) / 2  # a floor this large covers 95 % alone
    floors = np.concatenate([[0.0], typical * np.logspace(-3, 0, 31)])
    fits = []
    for floor in floors:
        a = _scale_for(s, e, floor, target2, 2.0)
        fits.append((abs(np.mean(e <= np.sqrt((a * s) ** 2 + floor**2)) - target1), a, float(floor)))
    # the smallest floor within 1 % of the best 1σ coverage: no floor when the spread is already calibrated
    tolerance = max(min(f[0] for f in fits), 0.01)
    _, scale, floor = next(f for f in fits if f[0] <= tolerance)
    after = np.sqrt((scale * s) ** 2 + floor**2)
    record = {
        "pixels": int(s.size),
        "spread_share": float(np.mean((scale * s) ** 2 / np.maximum(after**2, 1e-30))),
        "coverage_before": {"1sigma": coverage(s, e, 1), "2sigma": coverage(s, e, 2)},
        "coverage_after": {"1sigma": coverage(after, e, 1), "2sigma": coverage(after, e, 2)},
    }
    return StdCalibration(scale, floor, record, smoothing, physics_weight=physics_weight)


def _maps(physics_variances: Sequence[np.ndarray] | None, stds: Sequence[np.ndarray]) -> Sequence[np.ndarray | None]:
    """``physics_variances``, or one ``None`` per image."""
    if physics_variances is None:
        return [None] * len(stds)
    if len(physics_variances) != len(stds):
        raise ValueError(f"{len(physics_variances)} physics variance maps for {len(stds)} std maps")
    return physics_variances


def fit_physics_weight(
    stds: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    physics_variances: Sequence[np.ndarray],
    units: Sequence[float],
    smoothing: float,
    max_pixels: int = 200_000,
) -> tuple[float, dict[str, float]]:
    """How much of the task's physics variance to add to the samples' (smoothed) variance: the weight ``k`` of
    :func:`effective_std` that ranks the pixels by their error best (mean per-image Spearman ρ), among 1/30 to 30
    times the weight that makes ``G_r(s²) + k²·v`` the likeliest Gaussian variance of the errors; 0 when none
    ranks them better than the spread alone. (Ranking, not likelihood, decides, as for the smoothing radius: the
    scale and floor fitted next set the coverage.)

    Parameters
    ----------
    stds, errors, physics_variances
        Per image: the sample std, the error of the mean (same shapes, physical units) and the physics variance
        at those pixels (squared units).
    units
        Per image: the physical size of one normalised unit (the fit pools the images in these units).
    smoothing
        The spread's averaging radius, pixels.

    Returns
    -------
    weight, ranking
        ``k`` (0 when it does not help) and the mean per-image Spearman ρ(std, |error|) without and with it
        (``{"spread": …, "with_physics": …}``).
    """
    from scipy.optimize import minimize_scalar

    from .metrics import spearman_rho

    if not (len(stds) == len(errors) == len(physics_variances) == len(units)) or not stds:
        raise ValueError(
            "weighing in physics needs as many std, error and physics variance maps and units (at least one)"
        )
    vs = [smoothed_variance(x, smoothing) for x in stds]
    rng = np.random.default_rng(0)
    picks = [rng.choice(v.size, min(v.size, max(1, max_pixels // len(vs))), replace=False) for v in vs]
    u2 = [float(u) ** 2 for u in units]
    a = np.concatenate([v.ravel()[i] / c for v, i, c in zip(vs, picks, u2)])
    b = np.concatenate([np.ravel(n)[i] / c for n, i, c in zip(physics_variances, picks, u2)])
    e2 = np.concatenate([np.square(np.ravel(x)[i]) / c for x, i, c in zip(errors, picks, u2)])

    def nll(log_ratio: float) -> float:  # the overall scale profiled out: it has a closed form
        var = a + np.exp(log_ratio) * b + 1e-30
        return float(np.mean(np.log(var)) + np.log(np.mean(e2 / var)))

    likeliest = float(np.sqrt(np.exp(minimize_scalar(nll, bounds=(-25.0, 25.0), method="bounded").x)))

    def ranking(weight: float) -> float:
        joined = [effective_std(x, smoothing, n, weight) for x, n in zip(stds, physics_variances)]
        return float(np.nanmean([spearman_rho(j, e) for j, e in zip(joined, errors)]))

    tried = {likeliest * f: ranking(likeliest * f) for f in PHYSICS_WEIGHT_FACTORS}
    weight = max(tried, key=tried.get)
    rho = {"spread": float(np.nanmean([spearman_rho(np.sqrt(v), e) for v, e in zip(vs, errors)]))}
    rho["with_physics"] = tried[weight]
    return (weight if rho["with_physics"] > rho["spread"] else 0.0), rho


def fit_smoothing_and_weight(
    stds: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    physics_variances: Sequence[np.ndarray],
    units: Sequence[float],
    radius: float,
    factors: Sequence[float] = SMOOTHING_FACTORS,
) -> tuple[float, float, dict[float, dict[str, float]]]:
    """The smoothing radius and physics weight chosen together: at each of ``factors`` × ``radius`` the weight
    :func:`fit_physics_weight` picks, then the radius whose std (spread and physics variance joined) ranks the
    pixels by their error best. The physics variance carries part of what pooling the spread did, so the radius
    best for the spread alone (:func:`fit_smoothing`) is not the best beside it.

    Parameters
    ----------
    stds, errors, physics_variances, units
        As :func:`fit_physics_weight`.
    radius
        The task's smoothing radius, output pixels (> 0).

    Returns
    -------
    radius, weight, table
        The chosen radius (pixels), its weight (0 when the physics variance does not help at that radius), and
        at every radius tried the mean per-image Spearman ρ of the spread alone and with the physics variance
        (``{r: {"spread": …, "with_physics": …, "weight": …}}``).
    """
    if radius <= 0:
        raise ValueError("choosing the smoothing needs the task's radius (> 0)")
    table = {}
    for f in factors:
        r = float(radius * f)
        weight, rho = fit_physics_weight(stds, errors, physics_variances, units, r)
        table[r] = {**rho, "weight": weight}

    def best(r: float) -> float:
        row = table[r]
        return row["with_physics"] if row["weight"] > 0 else row["spread"]

    finite = [r for r in table if np.isfinite(best(r))]
    if not finite:
        return float(radius), 0.0, table
    chosen = max(finite, key=best)
    return chosen, table[chosen]["weight"], table


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
        A :class:`~napari_cvdm.predict.Prediction`.
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


def fit_smoothing(
    stds: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    radius: float,
    factors: Sequence[float] = SMOOTHING_FACTORS,
    max_pixels: int = 200_000,
) -> tuple[float, dict[float, float]]:
    """The radius over which to average the samples' variance so that the std ranks pixels by their error best.

    With few samples each pixel's spread is a noisy estimate (±27 % with 8), and the error's scale changes
    slowly where the structure does; how far to pool is measured rather than assumed: among ``factors`` ×
    ``radius``, the one with the largest mean per-image Spearman ρ(smoothed std, |error|). A scale and floor
    (:func:`fit_calibration`) change the coverage, not this ranking.

    Parameters
    ----------
    stds, errors
        Per image: the sample std and the error of the mean, same shapes ``(H, W)``, physical units.
    radius
        The task's radius (output pixels, :meth:`~napari_cvdm.tasks.Task.std_smoothing`); 0: no averaging,
        nothing to choose.
    max_pixels
        Pixels per image the ranking is measured on (:func:`~napari_cvdm.metrics.spearman_rho`: the same ones at
        every radius).

    Returns
    -------
    radius, table
        The chosen radius (pixels) and the mean ρ at each candidate radius.
    """
    from .metrics import spearman_rho

    if radius <= 0:
        return 0.0, {}
    if len(stds) != len(errors) or not stds:
        raise ValueError("choosing the smoothing needs as many std maps as error maps (at least one)")
    table = {}
    for f in factors:
        r = float(radius * f)
        rhos = [spearman_rho(smoothed_std(x, r), err, max_pixels) for x, err in zip(stds, errors)]
        table[r] = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")
    finite = {r: v for r, v in table.items() if np.isfinite(v)}
    return (max(finite, key=finite.get) if finite else float(radius)), table
