"""Image-quality and uncertainty-calibration metrics (numpy, scikit-image, scipy).

* ``sr``: intensities of a reconstruction are only defined up to an affine map
  (unknown gain and offset), so the estimate is first fitted to the target by
  least squares (``a·est + b``), then PSNR and SSIM are computed with the
  target's range.
* ``qpi``: phase is defined up to a constant, so both means are removed.
* Calibration: Spearman ρ between the predicted std and the absolute error, and
  the fraction of pixels whose error lies within ±2σ (0.954 for a calibrated
  Gaussian).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "affine_fit",
    "affine_coefficients",
    "psnr",
    "ssim",
    "Scores",
    "sr_scores",
    "qpi_scores",
    "Calibration",
    "calibration",
    "spearman_rho",
]


def affine_coefficients(estimate: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` minimising the squared error of ``a·estimate + b`` to ``target`` (same shapes)."""
    e = np.asarray(estimate, np.float64).ravel()
    t = np.asarray(target, np.float64).ravel()
    var = e.var()
    a = float(np.mean((e - e.mean()) * (t - t.mean())) / var) if var > 0 else 0.0
    return a, float(t.mean() - a * e.mean())


def affine_fit(estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``a·estimate + b`` with ``a, b`` minimising the squared error to ``target``."""
    a, b = affine_coefficients(estimate, target)
    return a * np.asarray(estimate, np.float64) + b


def _range(target: np.ndarray) -> float:
    r = float(np.max(target) - np.min(target))
    return r if r > 0 else 1.0


def psnr(estimate: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio (dB); ``data_range`` defaults to the target's range."""
    rng = _range(target) if data_range is None else data_range
    mse = float(np.mean((np.asarray(estimate, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float(10 * np.log10(rng**2 / max(mse, 1e-30)))


def ssim(estimate: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image) with the target's range."""
    from skimage.metrics import structural_similarity

    rng = _range(target) if data_range is None else data_range
    return float(
        structural_similarity(np.asarray(estimate, np.float64), np.asarray(target, np.float64), data_range=rng)
    )


@dataclass(frozen=True)
class Scores:
    """PSNR (dB) and SSIM of one image."""

    psnr: float
    ssim: float


def sr_scores(estimate: np.ndarray, target: np.ndarray) -> Scores:
    """Scores after the affine intensity fit. Shapes must match (``(2H, 2W)``)."""
    if np.shape(estimate) != np.shape(target):
        raise ValueError(f"estimate {np.shape(estimate)} and target {np.shape(target)} differ in shape")
    fitted = affine_fit(estimate, target)
    return Scores(psnr(fitted, target), ssim(fitted, target))


def qpi_scores(estimate: np.ndarray, target: np.ndarray) -> Scores:
    """Scores of a phase map after removing both means (radians)."""
    if np.shape(estimate) != np.shape(target):
        raise ValueError(f"estimate {np.shape(estimate)} and target {np.shape(target)} differ in shape")
    e = np.asarray(estimate, np.float64) - np.mean(estimate)
    t = np.asarray(target, np.float64) - np.mean(target)
    return Scores(psnr(e, t), ssim(e, t))


@dataclass(frozen=True)
class Calibration:
    """How well a std map predicts the error.

    Attributes
    ----------
    spearman
        Spearman rank correlation between std and |error| over pixels.
    coverage_2sigma
        Fraction of pixels with ``|error| ≤ 2·std``.
    coverage_1sigma
        Fraction of pixels with ``|error| ≤ std`` (0.683 for a calibrated Gaussian).
    reliability
        Observed coverage of the Gaussian central intervals of
        :data:`~napari_cvdm.inference.uncertainty.RELIABILITY_LEVELS` (a reliability diagram).
    """

    spearman: float
    coverage_2sigma: float
    coverage_1sigma: float = float("nan")
    reliability: tuple[float, ...] = ()


def calibration(std: np.ndarray, error: np.ndarray, max_pixels: int = 200_000, seed: int = 0) -> Calibration:
    """Calibration of an uncertainty map against the actual error (same units, same shape)."""

    s = np.asarray(std, np.float64).ravel()
    e = np.abs(np.asarray(error, np.float64)).ravel()
    if s.shape != e.shape:
        raise ValueError("std and error must have the same shape")
    cover = (coverage(s, e, 2), coverage(s, e, 1), reliability(s, e))
    return Calibration(spearman_rho(s, e, max_pixels, seed), *cover)


def spearman_rho(std: np.ndarray, error: np.ndarray, max_pixels: int = 200_000, seed: int = 0) -> float:
    """Spearman rank correlation between a std map and ``|error|`` over pixels (same shapes), on at most
    ``max_pixels`` pixels drawn with ``seed`` (the same pixels for every map of one size); NaN when either is
    constant."""
    from scipy.stats import spearmanr

    s = np.asarray(std, np.float64).ravel()
    e = np.abs(np.asarray(error, np.float64)).ravel()
    if s.size > max_pixels:
        idx = np.random.default_rng(seed).choice(s.size, max_pixels, replace=False)
        s, e = s[idx], e[idx]
    return float(spearmanr(s, e).statistic) if s.std() > 0 and e.std() > 0 else float("nan")


#: Fraction of a Gaussian within ±1σ and ±2σ.
GAUSSIAN_COVERAGE = {1: 0.6827, 2: 0.9545}


#: Nominal central-interval probabilities of the reliability diagram.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def coverage(std: np.ndarray, error: np.ndarray, k: float) -> float:
    """Fraction of pixels with ``|error| ≤ k·std`` (same shapes)."""
    return float(np.mean(np.abs(np.asarray(error, np.float64)) <= k * np.asarray(std, np.float64)))


def reliability(std: np.ndarray, error: np.ndarray, levels: Sequence[float] = RELIABILITY_LEVELS) -> tuple[float, ...]:
    """Observed coverage of the central Gaussian intervals of probability ``levels`` (a reliability diagram:
    a calibrated std gives ``observed == levels``)."""
    from scipy.stats import norm

    return tuple(coverage(std, error, float(norm.ppf(0.5 + p / 2))) for p in levels)
