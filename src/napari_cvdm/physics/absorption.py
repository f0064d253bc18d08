"""Whether a defocused pair shows absorption with fine detail, which two planes cannot tell apart from phase.

To first order in the defocus a pure phase object moves light between the planes: their half difference
``(I₊ − I₋)/2`` carries the phase, their mean ``(I₋ + I₊)/2`` stays at ``|A|² = 1`` up to terms of second order. An
absorbing object darkens both planes alike: the mean carries ``|A|²`` at zeroth order. Where ``A`` has fine detail
(stained or pigmented structures, dense tissue), a fit of phase and amplitude to two planes can trade one for the
other and still explain them; the TIE, which takes the amplitude from the mean, is not misled. The fine texture of
the mean against that of the difference says which case a pair is.

Intensities under unit illumination; lengths in pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FINE_ABSORPTION_RATIO", "fine_absorption_ratio"]

#: Above this ratio of fine textures (:func:`fine_absorption_ratio`) a pair is said to absorb with fine detail.
#: Pure-phase and smoothly absorbing simulated camera crops (amplitude 0.4–1) stay below it, pairs whose amplitude
#: has a photograph's detail mostly lie above (docs/physics.md, "Fine absorption").
FINE_ABSORPTION_RATIO = 0.75
#: Width (pixels) of the Gaussian whose residue is called fine texture, and the border left out.
_FINE_SIGMA, _BORDER = 2.0, 8


def _fine_rms(image: np.ndarray, noise_var: float) -> float:
    """RMS of ``image - G_σ * image`` inside the border, with the share of white noise of variance ``noise_var``
    that passes the filter taken out."""
    fine = image - ndi.gaussian_filter(image, _FINE_SIGMA)
    inner = fine[_BORDER:-_BORDER, _BORDER:-_BORDER]
    center = 1 / (2 * np.pi * _FINE_SIGMA**2)  # the Gaussian's central weight; the sum of its squares is half that
    passed = 1 - 2 * center + center / 2
    return float(np.sqrt(max(np.mean(inner**2) - passed * noise_var, 0.0)))


def fine_absorption_ratio(planes: np.ndarray, noise: float) -> float:
    """Fine texture of the planes' mean over that of their half difference (see the module doc).

    Parameters
    ----------
    planes
        ``(2, H, W)`` intensities (−dz, +dz) under unit illumination, ``H, W > 16``.
    noise
        σ of each plane's noise (unit illumination).

    Returns
    -------
    float
        The ratio (0 when neither has fine texture above the noise).
    """
    pair = np.asarray(planes, np.float64)
    if pair.ndim != 3 or pair.shape[0] != 2 or min(pair.shape[1:]) <= 2 * _BORDER:
        raise ValueError(f"need a pair (2, H, W) larger than {2 * _BORDER} pixels; got {pair.shape}")
    half_var = noise**2 / 2  # the mean and the half difference of two planes with independent noise
    mean, diff = _fine_rms(pair.mean(axis=0), half_var), _fine_rms((pair[1] - pair[0]) / 2, half_var)
    return mean / diff if diff > 0 else (0.0 if mean == 0 else float("inf"))
