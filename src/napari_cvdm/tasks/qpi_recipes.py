"""The retrieval that conditions a qpi model, pair by pair: the recipe recorded in the model's normalisation, or —
where that recipe also records a longer fit for nearly transparent samples — that longer fit; the noise the data
are weighed with.

The recorded retrieval of the bundled model is one L-BFGS run that ends after about 20 iterations: an early stop
that keeps it consistent on noisy real planes but leaves the lowest modes (tilt, curvature) near the TIE start on
clean simulated ones. Fitting on until the misfit stalls helps where there is no absorption for the fit to trade
against the phase, and can hurt badly where there is (absorption with fine detail, which two planes cannot tell
from phase, and strong absorption are pushed into the phase further with every iteration) or where the Fresnel
model does not explain the planes (real illumination: every iteration past about 50 then moves the phase in ways
two distances do not share). The recorded fit and the planes say which case a pair is: the amplitude it found, its
residual in units of the planes' noise, and the fine texture of the planes' mean against that of their difference
(:func:`~napari_cvdm.physics.absorption.fine_absorption_ratio`), which also flags a phase strong enough to focus
light. The longer fit weighs the data by the noise the recorded fit's residual implies where that is below the
planes' own estimate, which fine phase structure inflates.
"""

from __future__ import annotations

import numpy as np
import torch

from ..physics.absorption import FINE_ABSORPTION_RATIO, fine_absorption_ratio
from ..physics.noise import pair_noise
from ..physics.retrieval import RetrievalOptions, Retrieved, retrieve_phase
from .records import RESIDUAL_LIMIT, interior_rms

__all__ = [
    "retrieval_channels",
    "fit_noise",
    "FIT_NOISE_FLOOR",
    "PLANES_NOISE",
    "LONGER_FIT_KEY",
    "TRANSPARENT_FIT",
    "TRANSPARENT_AMPLITUDE",
    "RESIDUAL_PER_NOISE",
    "RESIDUAL_NOISE",
    "longer_fit_noise",
    "with_transparent_fit",
    "recorded_recipe",
    "longer_recipe",
    "fits_longer",
]

#: The least σ (units of the background) a retrieval weighs a pair's data with (:func:`fit_noise`).
FIT_NOISE_FLOOR = 1e-3

#: A recipe's ``noise`` when the retrieval weighs each pair by its own noise (:func:`fit_noise`) rather than by a
#: fixed σ (models trained before it record
#: :data:`~napari_cvdm.tasks.qpi_condition.RETRIEVAL_NOISE`).
PLANES_NOISE = "planes"

#: The retrieval's residual (RMS inside a 4-pixel border) per unit of the planes' noise σ: the fit, free at every
#: pixel and in a margin, absorbs part of the noise (√½ ≈ 0.71 for one phase value per pixel of two planes).
#: Measured on simulated camera crops of cells, textures and photos, pure phase and absorbing (docs/physics.md).
RESIDUAL_PER_NOISE = 0.65

#: The recipe key that holds the longer fit (absent: the recorded recipe serves every pair).
LONGER_FIT_KEY = "transparent_fit"

#: A recipe's ``noise`` when the data are weighed by the smaller of the planes' own noise estimate and the noise the
#: recorded fit's residual implies (:func:`longer_fit_noise`).
RESIDUAL_NOISE = "planes or residual"

#: The longer fit: the data weighed by :data:`RESIDUAL_NOISE`, run until its misfit stalls (up to 400 iterations,
#: none judged before 30): the stopping rule of the `iterative` and `flat-background` methods.
TRANSPARENT_FIT = {"noise": RESIDUAL_NOISE, "iterations": 400, "stall_window": 20, "stall_start": 30}

#: A pair is nearly transparent when the recorded fit's amplitude (its 1st percentile) is at least this.
TRANSPARENT_AMPLITUDE = 0.9

#: The least side (pixels) on which the fine textures can be compared; smaller pairs keep the recorded recipe.
_LEAST_SIDE = 17


def with_transparent_fit(recipe: dict) -> dict:
    """``recipe`` (a model's recorded retrieval) with :data:`TRANSPARENT_FIT` as the fit for nearly transparent
    pairs (:func:`fits_longer`)."""
    return {**recorded_recipe(recipe), LONGER_FIT_KEY: dict(TRANSPARENT_FIT)}


def recorded_recipe(recipe: dict) -> dict:
    """``recipe`` without its longer fit: the retrieval every pair gets first."""
    return {k: v for k, v in recipe.items() if k != LONGER_FIT_KEY}


def longer_recipe(recipe: dict) -> dict:
    """The recorded recipe with the settings of its longer fit in place (``recipe`` must record one)."""
    return {**recorded_recipe(recipe), **recipe[LONGER_FIT_KEY]}


def fits_longer(planes: np.ndarray, noise: float, amplitude: np.ndarray, residual_rms: float) -> bool:
    """Whether a pair gets the longer fit.

    Parameters
    ----------
    planes
        ``(2, H, W)`` intensities (−dz, +dz) under unit illumination.
    noise
        σ of the planes' noise (units of the background).
    amplitude
        ``(H, W)`` amplitude the recorded fit found (1 = transparent).
    residual_rms
        RMS of the recorded fit's residual inside the image, in units of ``noise``.

    Returns
    -------
    bool
        True when the sample is nearly transparent (the amplitude's 1st percentile at least
        :data:`TRANSPARENT_AMPLITUDE`), the Fresnel model explains the planes (the residual at most
        :data:`~napari_cvdm.tasks.records.RESIDUAL_LIMIT`; real illumination, fine absorption: more) and the
        planes' mean has no more fine texture than their difference (``fine_absorption_ratio ≤``
        :data:`~napari_cvdm.physics.absorption.FINE_ABSORPTION_RATIO`); pairs too small to judge do not.
    """
    pair = np.asarray(planes, np.float64)
    if min(pair.shape[-2:]) < _LEAST_SIDE or residual_rms > RESIDUAL_LIMIT:
        return False
    if np.percentile(amplitude, 1) < TRANSPARENT_AMPLITUDE:
        return False
    return fine_absorption_ratio(pair, noise) <= FINE_ABSORPTION_RATIO


def fit_noise(planes: np.ndarray) -> float:
    """σ (units of the background) the retrieval weighs a pair ``(2, H, W)`` with: the planes' own noise
    (:func:`~napari_cvdm.physics.noise.pair_noise`), at least :data:`FIT_NOISE_FLOOR`. The balance between the
    data and the pull towards the TIE start then follows the noise: a fixed σ of 0.01 let the fit of a pair three
    times noisier chase the noise into large, wrong phases (docs/physics.md)."""
    return max(pair_noise(planes), FIT_NOISE_FLOOR)


def longer_fit_noise(planes_noise: float, residual_rms: float) -> float:
    """σ (units of the background) the longer fit weighs the data with: the smaller of the planes' own noise
    estimate ``planes_noise`` (which fine phase structure inflates) and the noise the recorded fit's residual
    implies (``residual_rms``, its RMS in units of the background, over :data:`RESIDUAL_PER_NOISE`), at least
    :data:`FIT_NOISE_FLOOR`: :func:`~napari_cvdm.tasks.qpi_condition.noise_with_residual` for a fit weighed by any
    σ (that one reads the reference retrieval's residual, in units of its fixed σ), floored as the fit's σ is."""
    return max(min(planes_noise, residual_rms / RESIDUAL_PER_NOISE), FIT_NOISE_FLOOR)


def retrieval_channels(intensities: torch.Tensor, recipe: dict) -> torch.Tensor:
    """Retrieval phase and amplitude ``(B, 2, H, W)`` of intensities ``(B, 2, H, W)`` at (−dz, +dz); image by
    image, each nearly transparent pair fitted again with the recipe's longer fit, when it records one
    (:func:`fits_longer`, :func:`longer_fit_noise`)."""
    if LONGER_FIT_KEY not in recipe:
        return _channels(_fitted(intensities, recipe, _recipe_noise(intensities, recipe)))
    first, out = recorded_recipe(recipe), []
    for x, p in zip(intensities[:, None], intensities.detach().cpu().numpy(), strict=True):
        sigma = _recipe_noise(x, first)
        r = _fitted(x, first, sigma)
        noise, left = pair_noise(p), interior_rms(r.residual[0].numpy()) * sigma
        if fits_longer(p, noise, r.amplitude[0].numpy(), left / noise):
            r = _fitted(x, longer_recipe(recipe), longer_fit_noise(noise, left))
        out.append(_channels(r))
    return torch.cat(out)


def _recipe_noise(intensities: torch.Tensor, recipe: dict) -> float:
    """σ (units of the background) a recorded recipe weighs the batch ``(B, 2, H, W)`` with: its fixed value, or
    for :data:`PLANES_NOISE` the images' mean :func:`fit_noise` (the batch shares one fit)."""
    if recipe["noise"] != PLANES_NOISE:
        return float(recipe["noise"])
    return float(np.mean([fit_noise(p) for p in intensities.detach().cpu().numpy()]))


def _fitted(intensities: torch.Tensor, recipe: dict, noise: float) -> Retrieved:
    """The retrieval of ``recipe`` on a batch ``(B, 2, H, W)``, fitted together, the data weighed by σ ``noise``."""
    opts = {k: recipe[k] for k in ("iterations", "start_weight", "tie_regularization", "amplitude_smoothness")}
    opts["stall_window"] = recipe.get("stall_window")  # recipes before it ran a fixed count
    opts["stall_start"] = recipe.get("stall_start", 0)  # recipes before it judged a stall from the start
    dz, lam, px = recipe["dz_um"], recipe["wavelength_um"], recipe["pixel_um"]
    return retrieve_phase(intensities.float(), (-dz, dz), lam, px, noise, RetrievalOptions(**opts))


def _channels(r: Retrieved) -> torch.Tensor:
    """A retrieval's phase and amplitude as ``(B, 2, H, W)``."""
    return torch.stack([r.phase, r.amplitude], dim=1)
