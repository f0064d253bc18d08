"""Fitting a std calibration on held-out pairs: the scale and floor that give Gaussian coverage, the pooling radius,
and the weight of the task's physics variance (:class:`~napari_cvdm.inference.uncertainty.StdCalibration` records them).

``napari-cvdm calibrate`` calls these on pairs the model never trained on; what the fitted numbers mean is told in
:mod:`napari_cvdm.inference.uncertainty`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.metrics import GAUSSIAN_COVERAGE, coverage, spearman_rho
from ..inference.uncertainty import StdCalibration, _maps, effective_std, smoothed_std, smoothed_variance

__all__ = [
    "SMOOTHING_FACTORS",
    "PHYSICS_WEIGHT_FACTORS",
    "fit_calibration",
    "fit_scale",
    "fit_smoothing",
    "fit_physics_weight",
    "fit_smoothing_and_weight",
]


#: Multiples of a task's smoothing radius among which :func:`fit_smoothing` chooses.
SMOOTHING_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)


#: Multiples of the likeliest physics weight among which :func:`fit_physics_weight` chooses (steps of √3 chose
#: a weight that ranked the qpi validation pairs better and the test pairs worse: ρ 0.348 against 0.354).
PHYSICS_WEIGHT_FACTORS = (1 / 30, 1 / 10, 1 / 3, 1.0, 3.0, 10.0, 30.0)


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
        Pixels per image the ranking is measured on (:func:`~napari_cvdm.data.metrics.spearman_rho`: the same ones at
        every radius).

    Returns
    -------
    radius, table
        The chosen radius (pixels) and the mean ρ at each candidate radius.
    """
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
