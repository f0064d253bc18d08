"""The optical cut-off of a widefield image, estimated from its own power spectrum.

A widefield image's radial power spectrum is the object's (a power law, ``A·f^−α``) times the squared OTF of a
circular pupil (zero beyond the cut-off ``2·NA/λ``), on top of the camera's white noise. :func:`estimate_cutoff`
fits that model (the OTF in focus, or defocused: a real image's plane seldom is exactly in focus, and a defocused
OTF fitted with the in-focus shape reads as a cut-off 1.5× too high) to the radially averaged spectrum, the noise
floor read off the spectrum's corners (beyond 0.55 cycles per pixel, where no optics of a camera that samples at
Nyquist passes anything). Where the signal meets the noise alone would depend on the brightness; the fit uses the
OTF's shape below that point as well.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "widefield_otf",
    "defocused_otf_profile",
    "DEFOCUS_SHAPES",
    "windowed_power",
    "radial_power",
    "estimate_cutoff",
    "CUTOFF_GRID",
    "MIN_FIT_FREQUENCY",
]

#: Cut-offs tried by the fit, cycles per pixel.
CUTOFF_GRID = np.linspace(0.06, 0.5, 89)
#: Power-law exponents of the object's spectrum tried by the fit.
EXPONENT_GRID = np.linspace(0.5, 4.0, 15)
#: The lowest frequencies (the image's size, its windowing) carry no information on the optics.
MIN_FIT_FREQUENCY = 0.03
#: Paraxial defocus at the pupil's edge (waves) of the OTF shapes the fit tries: a real image's plane is seldom
#: exactly in focus, and defocus weakens the middle of the passband while the cut-off stays where it was.
DEFOCUS_SHAPES = (0.0, 0.25, 0.5)
#: Median over mean of an exponentially distributed power (a noise-only Fourier coefficient): ln 2.
_MEDIAN_TO_MEAN = float(np.log(2.0))


def widefield_otf(nu: np.ndarray) -> np.ndarray:
    """The incoherent OTF of a circular pupil at ``nu`` = frequency / cut-off (0 beyond 1)."""
    v = np.clip(np.asarray(nu, np.float64), 0.0, 1.0)
    return (2 / np.pi) * (np.arccos(v) - v * np.sqrt(1 - v**2))


def defocused_otf_profile(nu: np.ndarray, edge_waves: float, side: int = 512) -> np.ndarray:
    """The incoherent OTF of a circular pupil with a paraxial defocus of ``edge_waves`` at its edge (phase
    ``edge_waves·ρ²``), at ``nu`` = frequency / cut-off (0 beyond 1): the pupil's autocorrelation along one axis,
    computed on a ``side``² grid. ``edge_waves = 0`` gives :func:`widefield_otf` (to the grid's sampling)."""
    f = np.fft.fftfreq(side) * 8  # the pupil's radius is an eighth of the grid, its autocorrelation's a quarter
    rho2 = f[:, None] ** 2 + f[None, :] ** 2
    pupil = np.where(rho2 <= 1, np.exp(2j * np.pi * edge_waves * rho2), 0)
    otf = np.fft.fft2(np.abs(np.fft.ifft2(pupil)) ** 2).real
    row = otf[0, : side // 4 + 1] / otf[0, 0]
    return np.interp(np.clip(np.asarray(nu, np.float64), 0, 1), np.arange(row.size) / (side // 4), row)


@functools.cache
def _shape_profiles() -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """``ν`` (257 points over 0–1) and the OTF profile of each of :data:`DEFOCUS_SHAPES` on it, computed once."""
    nu = np.linspace(0, 1, 257)
    return nu, tuple(defocused_otf_profile(nu, edge) for edge in DEFOCUS_SHAPES)


def windowed_power(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The power spectrum of an ``(H, W)`` image under a Hann window (its windowed mean removed) and the radial
    frequency of each coefficient, cycles per pixel: two ``(H, W)`` arrays in numpy's FFT layout."""
    x = np.asarray(image, np.float64)
    h, w = x.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((x - np.sum(x * win) / np.sum(win)) * win)) ** 2
    return power, np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])


def radial_power(image: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """The Hann-windowed power spectrum of an ``(H, W)`` image averaged in ``bins`` rings up to 0.5 cycles per
    pixel: ``(centres, power, noise floor)``, the floor the mean power beyond 0.55 cycles per pixel (robustly, from
    the median)."""
    power, f = windowed_power(image)
    floor = float(np.median(power[f > 0.55])) / _MEDIAN_TO_MEAN
    edges = np.linspace(0, 0.5, bins + 1)
    ring = np.digitize(f.ravel(), edges) - 1
    inside = (ring >= 0) & (ring < bins)
    total = np.bincount(ring[inside], power.ravel()[inside], bins)
    count = np.maximum(np.bincount(ring[inside], None, bins), 1)
    return (edges[:-1] + edges[1:]) / 2, total / count, max(floor, 1e-30)


def estimate_cutoff(image: np.ndarray) -> float:
    """The widefield cut-off ``2·NA/λ·pixel`` of an ``(H, W)`` image (at least 64 pixels a side), cycles per pixel:
    the best least-squares fit of ``log(A·f^−α·OTF(f/fc)² + floor)`` to the log of its radial power spectrum, the
    OTF in focus or defocused (:data:`DEFOCUS_SHAPES`).

    Raises
    ------
    ValueError
        An image too small for a spectrum.
    """
    if min(np.shape(image)[-2:]) < 64:
        raise ValueError("estimating the optical cut-off needs an image of at least 64×64 pixels")
    f, power, floor = radial_power(image)
    keep = f > MIN_FIT_FREQUENCY
    f, logp = f[keep], np.log(np.maximum(power[keep], 1e-30))
    amplitudes = np.exp(np.linspace(-10, 40, 201))[:, None]  # relative to the floor
    best, cutoff = np.inf, float(CUTOFF_GRID[-1])
    nu, profiles = _shape_profiles()
    power_laws = f[None, :] ** -EXPONENT_GRID[:, None]  # (exponents, frequencies)
    for profile in profiles:
        for fc in CUTOFF_GRID:
            shape = np.interp(f / fc, nu, profile, right=0.0) ** 2
            model = np.log(floor * (amplitudes[None] * (power_laws * shape)[:, None, :] + 1))
            err = ((model - logp) ** 2).sum(axis=-1).min()  # the best exponent and amplitude
            if err < best:
                best, cutoff = err, float(fc)
    return cutoff
