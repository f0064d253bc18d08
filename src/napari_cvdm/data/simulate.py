"""Simulated training and test pairs for both tasks. Lengths in µm.

``sr``: fluorescent structures are drawn on a fine grid (a quarter of the
camera pixel), blurred by the widefield Airy PSF and integrated over camera
pixels (4×4 binning), then put through the camera model; the target is the same
structure blurred by a PSF half as wide and integrated over pixels half the
camera's (2×2 binning). Input in photo-electrons; target noise-free, in the same
photon density (per camera-pixel area) and without background. Realistic scenes
(:func:`simulate_sr_scene` with :func:`draw_sr_conditions`) add out-of-focus haze
from structures 0.5–2 µm above or below the focal plane (defocused PSF, in input
and target), a background of 0–50 % and 10–1000 photons.

``qpi``: :mod:`napari_cvdm.data.simulate_qpi` (re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..physics.aberrations import DEFOCUS_RANGE, SPHERICAL_RANGE, depth_of_field_um, pupil_otf
from ..physics.widefield import (
    IMMERSION_INDEX,
    WidefieldOptics,
    airy_psf,
    bicubic_upsample,
    camera_noise,
    defocused_otf,
)
from .simulate_qpi import (
    ABSORPTION_RANGE,
    NOISE_RANGE,
    QPI_SOURCES,
    QPIPair,
    absorption_map,
    camera_planes,
    crop_of_larger_field,
    draw_noise,
    load_grayscale_images,
    phase_map,
    simulate_qpi_pair,
)
from .structures import SR_HELDOUT_STRUCTURES, SR_STRUCTURES, cytoplasm_footprint, draw_structure

__all__ = [
    "SR_STRUCTURES",
    "SR_HELDOUT_STRUCTURES",
    "QPI_SOURCES",
    "SRPair",
    "QPIPair",
    "NOISE_RANGE",
    "ABSORPTION_RANGE",
    "draw_noise",
    "absorption_map",
    "crop_of_larger_field",
    "camera_planes",
    "PHOTON_RANGE",
    "draw_photons",
    "SCENE_PHOTON_RANGE",
    "BACKGROUND_RANGE",
    "HAZE_RANGE",
    "SRConditions",
    "draw_sr_conditions",
    "draw_aberration",
    "CYTOSOL_RANGE",
    "draw_cytosol",
    "simulate_sr_scene",
    "TEST_SEED",
    "VALIDATION_SEED",
    "draw_structure",
    "simulate_sr_pair",
    "phase_map",
    "simulate_qpi_pair",
    "load_grayscale_images",
]

#: Seed of the default held-out test sets: no training run may use it.
TEST_SEED = 90_210_001
#: Seed of the validation sets (baseline parameters, validation of simulated training runs).
VALIDATION_SEED = 90_210_002

FINE = 4  # fine-grid sub-pixels per camera pixel and axis

# ------------------------------------------------------------------ sr pairs

#: Signal range of the first sr simulator, photons per pixel (drawn log-uniformly by :func:`draw_photons`).
PHOTON_RANGE = (15.0, 600.0)
#: Signal range of :func:`draw_sr_conditions`, photons per pixel.
SCENE_PHOTON_RANGE = (10.0, 1000.0)
#: Background of :func:`draw_sr_conditions`, fraction of the signal.
BACKGROUND_RANGE = (0.0, 0.5)
#: Out-of-focus haze of :func:`draw_sr_conditions` (when there is any), fraction of the signal.
HAZE_RANGE = (0.1, 1.0)
#: Diffuse in-focus labelling of the cytoplasm drawn by :func:`draw_cytosol`, fraction of the signal.
CYTOSOL_RANGE = (0.1, 0.5)


def draw_photons(rng: np.random.Generator, photon_range: tuple[float, float] = PHOTON_RANGE) -> float:
    """A signal level drawn log-uniformly from ``photon_range`` (photons per pixel)."""
    lo, hi = np.log(photon_range)
    return float(np.exp(rng.uniform(lo, hi)))


@dataclass(frozen=True)
class SRPair:
    """One simulated sr pair: ``input`` ``(H, W)`` and ``target`` ``(2H, 2W)``, float32."""

    input: np.ndarray
    target: np.ndarray
    structure: str
    photons: float
    optics: WidefieldOptics


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape
    return image.reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))


@dataclass(frozen=True)
class SRConditions:
    """How one sr image is taken.

    Attributes
    ----------
    photons
        Signal level: the 99.9th percentile of the noise-free input (through the aberrated pupil where there is
        one), photons per pixel.
    background
        Uniform background (autofluorescence, stray light) as a fraction of ``photons``.
    haze
        Out-of-focus light from structures above and below the focal plane: the brightest of it as a fraction
        of ``photons`` (0: none).
    haze_depth_um
        How far out of focus those structures lie, µm.
    defocus_um
        How far the in-focus structure lies from the focal plane, µm (:mod:`napari_cvdm.physics.aberrations`).
    spherical_waves
        Primary spherical aberration of the widefield pupil, waves.
    cytosol
        Diffuse, in-focus labelling of the cells' cytoplasm (free dye or unpolymerised protein) under the
        structure, which then lies inside the cells: its level as a fraction of ``photons`` (0: none, no cells).
    """

    photons: float
    background: float = 0.1
    haze: float = 0.0
    haze_depth_um: float = 1.0
    defocus_um: float = 0.0
    spherical_waves: float = 0.0
    cytosol: float = 0.0

    @property
    def aberrated(self) -> bool:
        """Whether the widefield image is taken through an aberrated pupil (else the ideal Airy pattern)."""
        return self.defocus_um != 0 or self.spherical_waves != 0

    def __post_init__(self) -> None:
        if self.photons <= 0:
            raise ValueError(f"photons must be positive, got {self.photons}")
        if self.background < 0 or self.haze < 0 or self.cytosol < 0:
            raise ValueError("background, haze and cytosol must be >= 0")


def draw_sr_conditions(rng: np.random.Generator, photons: float | None = None) -> SRConditions:
    """Imaging conditions of real cells: photons log-uniform in :data:`SCENE_PHOTON_RANGE` (unless given),
    background uniform in :data:`BACKGROUND_RANGE`, haze in :data:`HAZE_RANGE` for 70 % of images (none for the
    rest) from 0.5–2 µm out of focus."""
    level = draw_photons(rng, SCENE_PHOTON_RANGE) if photons is None else float(photons)
    haze = float(rng.uniform(*HAZE_RANGE)) if rng.random() < 0.7 else 0.0
    return SRConditions(level, float(rng.uniform(*BACKGROUND_RANGE)), haze, float(rng.uniform(0.5, 2.0)))


def draw_aberration(conditions: SRConditions, rng: np.random.Generator, optics: WidefieldOptics) -> SRConditions:
    """``conditions`` with the in-focus structure put out of focus by up to :data:`DEFOCUS_RANGE` depths of field
    and a spherical aberration of up to :data:`SPHERICAL_RANGE` waves, each of either sign (uniform): the
    widefield transfer of a real microscope, whose target stays the ideal one."""
    z = rng.uniform(*DEFOCUS_RANGE) * depth_of_field_um(optics) * rng.choice([-1.0, 1.0])
    s = rng.uniform(*SPHERICAL_RANGE) * rng.choice([-1.0, 1.0])
    return replace(conditions, defocus_um=float(z), spherical_waves=float(s))


def draw_cytosol(conditions: SRConditions, rng: np.random.Generator) -> SRConditions:
    """``conditions`` with the structure inside cells whose cytoplasm glows at a level uniform in
    :data:`CYTOSOL_RANGE` of the signal: what real cells show under their filaments and organelles (free
    tubulin, unbound dye), which a SIM reconstruction keeps."""
    return replace(conditions, cytosol=float(rng.uniform(*CYTOSOL_RANGE)))


def _widefield_fine(density: np.ndarray, conditions: SRConditions, optics: WidefieldOptics) -> np.ndarray:
    """The fine-grid density ``(h, w)`` (pixel ``optics.pixel_um / FINE``) through the widefield PSF: the Airy
    pattern, or the aberrated pupil of ``conditions`` (zero-padded by a micrometre as the Airy convolution is)."""
    from scipy.signal import fftconvolve  # here: importing scipy.signal costs 0.85 s that commands without
    # simulation (predict) need not pay

    fine_px = optics.pixel_um / FINE
    if not conditions.aberrated:
        return fftconvolve(density, airy_psf(optics.na, optics.wavelength_um, fine_px, oversample=1), mode="same")
    pad = int(math.ceil(1.0 / fine_px))
    grid = (density.shape[0] + 2 * pad, density.shape[1] + 2 * pad)
    otf = pupil_otf(grid, fine_px, optics, conditions.defocus_um, conditions.spherical_waves)
    out = np.fft.irfft2(np.fft.rfft2(np.pad(density, pad)) * otf, s=grid)
    return out[pad:-pad, pad:-pad]


def _haze(
    structure: str, shape: tuple[int, int], conditions: SRConditions, rng: np.random.Generator, optics: WidefieldOptics
) -> np.ndarray:
    """Out-of-focus light on the camera grid ``shape``: the same kind of structure drawn on a field padded by
    the blur radius, through the defocused PSF (:func:`defocused_otf`), cropped; brightest value 1."""
    z = conditions.haze_depth_um * rng.choice([-1.0, 1.0])
    reach = abs(z) * math.tan(math.asin(min(optics.na / IMMERSION_INDEX, 0.99)))
    pad = int(math.ceil(reach / optics.pixel_um)) + 4
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    density = draw_structure(structure, (h, w), optics.pixel_um, rng)
    blurred = np.real(np.fft.ifft2(np.fft.fft2(density) * defocused_otf((h, w), optics, z)))
    crop = np.clip(blurred[pad : pad + shape[0], pad : pad + shape[1]], 0, None)
    peak = float(crop.max())
    return crop / peak if peak > 0 else crop


def _imaged(
    density: np.ndarray, shape: tuple[int, int], margin: int, conditions: SRConditions, optics: WidefieldOptics
) -> tuple[np.ndarray, np.ndarray]:
    """A fine-grid density (``shape`` plus ``margin`` camera pixels each side, ``FINE``× finer) through the
    widefield (:func:`_widefield_fine`) and the target's half-width PSF, binned to the camera ``shape`` and the
    2× grid, margins cropped, negative ringing clipped: ``(input (H, W), target (2H, 2W))`` per fine-grid unit."""
    from scipy.signal import fftconvolve  # here: importing scipy.signal costs 0.85 s that commands without
    # simulation (predict) need not pay

    h, w, g = shape[0], shape[1], optics.gain
    sim_psf = airy_psf(optics.na * g, optics.wavelength_um, optics.pixel_um / FINE, oversample=1)
    wide = _bin(_widefield_fine(density, conditions, optics), FINE)[margin : margin + h, margin : margin + w]
    sharp = _bin(fftconvolve(density, sim_psf, mode="same"), FINE // g)
    sharp = sharp[margin * g : (margin + h) * g, margin * g : (margin + w) * g]
    return np.clip(wide, 0, None), np.clip(sharp, 0, None)


def simulate_sr_scene(
    structure: str,
    shape: tuple[int, int],
    conditions: SRConditions,
    rng: np.random.Generator,
    optics: WidefieldOptics | None = None,
) -> SRPair:
    """Simulate a widefield input and its SIM-like target under ``conditions``.

    The in-focus structure is drawn on a fine grid, blurred by the widefield (input; aberrated where
    ``conditions`` say so, :func:`draw_aberration`) and half-width (target, always the ideal one) PSFs and binned;
    with a glowing cytoplasm (:func:`draw_cytosol`) the structure is kept inside the cells and their glow imaged
    with it; out-of-focus haze (when ``conditions.haze > 0``) is added to both — it is smooth, so the
    target carries it upsampled, as a SIM-like reconstruction keeps out-of-focus background; the input gets the
    background and the camera's noise.

    Parameters
    ----------
    structure
        A class of :data:`SR_STRUCTURES` or :data:`SR_HELDOUT_STRUCTURES`.
    shape
        Camera image size ``(H, W)``.
    """
    optics = optics or WidefieldOptics()
    margin = int(math.ceil(1.0 / optics.pixel_um))  # 1 µm of context so edges are blurred like the inside
    fine = ((shape[0] + 2 * margin) * FINE, (shape[1] + 2 * margin) * FINE)
    density = draw_structure(structure, fine, optics.pixel_um / FINE, rng)
    if conditions.cytosol > 0:
        cytoplasm = cytoplasm_footprint(fine, optics.pixel_um / FINE, rng)
        density = density * cytoplasm
    wide, sharp = _imaged(density, shape, margin, conditions, optics)
    g = optics.gain
    scale = conditions.photons / (float(np.percentile(wide, 99.9)) or 1.0)
    wide, sharp = wide * scale, sharp * scale * g * g  # photons per camera pixel; target per camera-pixel area
    if conditions.cytosol > 0:  # a footprint of 1 on the fine grid sums to FINE² per camera pixel
        glow, glow_sharp = _imaged(cytoplasm, shape, margin, conditions, optics)
        level = conditions.cytosol * conditions.photons / FINE**2
        wide, sharp = wide + glow * level, sharp + glow_sharp * level * g * g
    if conditions.haze > 0:
        haze = _haze(structure, shape, conditions, rng, optics) * conditions.haze * conditions.photons
        wide = wide + haze
        sharp = sharp + np.clip(bicubic_upsample(haze, g), 0, None)
    noisy = camera_noise(wide, conditions.background * conditions.photons, optics.read_noise, rng)
    return SRPair(
        input=noisy, target=sharp.astype(np.float32), structure=structure, photons=conditions.photons, optics=optics
    )


def simulate_sr_pair(
    structure: str,
    shape: tuple[int, int],
    photons: float,
    rng: np.random.Generator,
    optics: WidefieldOptics | None = None,
) -> SRPair:
    """Simulate a widefield input and its SIM-like target in the bundled model's first conditions: in focus,
    background ``optics.background_fraction``, no haze (:func:`simulate_sr_scene`).

    Parameters
    ----------
    structure
        A class of :data:`SR_STRUCTURES`.
    shape
        Camera image size ``(H, W)``.
    photons
        Signal level: the 99.9th percentile of the noise-free input, photons per pixel.
    rng
        Random generator.
    optics
        Optics and camera (default :class:`WidefieldOptics`).
    """
    optics = optics or WidefieldOptics()
    return simulate_sr_scene(structure, shape, SRConditions(photons, optics.background_fraction), rng, optics)
