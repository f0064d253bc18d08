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

``qpi``: a thin object ``A·exp(iφ)`` (φ in [0, 3.5] rad, weak absorption A in
[0.8, 1]) under unit illumination is drawn on a field larger than the camera's
and propagated to ``−dz`` and ``+dz`` (Fresnel); the camera image is the centre
crop, so light crosses its borders as in a real microscope (no mirror or
wrap-around borders). Gaussian noise with σ drawn from :data:`NOISE_RANGE` is
added; the target is φ on the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..physics.fresnel import QPIOptics, defocus_stack, phase_object
from ..physics.retrieval import fresnel_margin
from ..physics.widefield import (
    IMMERSION_INDEX,
    WidefieldOptics,
    airy_psf,
    bicubic_upsample,
    camera_noise,
    defocused_otf,
)
from .structures import SR_HELDOUT_STRUCTURES, SR_STRUCTURES, draw_structure

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
        Signal level: the 99.9th percentile of the in-focus, noise-free input, photons per pixel.
    background
        Uniform background (autofluorescence, stray light) as a fraction of ``photons``.
    haze
        Out-of-focus light from structures above and below the focal plane: the brightest of it as a fraction
        of ``photons`` (0: none).
    haze_depth_um
        How far out of focus those structures lie, µm.
    """

    photons: float
    background: float = 0.1
    haze: float = 0.0
    haze_depth_um: float = 1.0

    def __post_init__(self) -> None:
        if self.photons <= 0:
            raise ValueError(f"photons must be positive, got {self.photons}")
        if self.background < 0 or self.haze < 0:
            raise ValueError("background and haze must be >= 0")


def draw_sr_conditions(rng: np.random.Generator, photons: float | None = None) -> SRConditions:
    """Imaging conditions of real cells: photons log-uniform in :data:`SCENE_PHOTON_RANGE` (unless given),
    background uniform in :data:`BACKGROUND_RANGE`, haze in :data:`HAZE_RANGE` for 70 % of images (none for the
    rest) from 0.5–2 µm out of focus."""
    level = draw_photons(rng, SCENE_PHOTON_RANGE) if photons is None else float(photons)
    haze = float(rng.uniform(*HAZE_RANGE)) if rng.random() < 0.7 else 0.0
    return SRConditions(level, float(rng.uniform(*BACKGROUND_RANGE)), haze, float(rng.uniform(0.5, 2.0)))


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


def simulate_sr_scene(
    structure: str,
    shape: tuple[int, int],
    conditions: SRConditions,
    rng: np.random.Generator,
    optics: WidefieldOptics | None = None,
) -> SRPair:
    """Simulate a widefield input and its SIM-like target under ``conditions``.

    The in-focus structure is drawn on a fine grid, blurred by the widefield (input) and half-width (target)
    PSFs and binned; out-of-focus haze (when ``conditions.haze > 0``) is added to both — it is smooth, so the
    target carries it upsampled, as a SIM-like reconstruction keeps out-of-focus background; the input gets the
    background and the camera's noise.

    Parameters
    ----------
    structure
        A class of :data:`SR_STRUCTURES` or :data:`SR_HELDOUT_STRUCTURES`.
    shape
        Camera image size ``(H, W)``.
    """
    from scipy.signal import fftconvolve  # here: importing scipy.signal costs 0.85 s that commands without
    # simulation (predict) need not pay

    optics = optics or WidefieldOptics()
    h, w = shape
    fine_px = optics.pixel_um / FINE
    margin = int(math.ceil(1.0 / optics.pixel_um))  # 1 µm of context so edges are blurred like the inside
    fh, fw = (h + 2 * margin) * FINE, (w + 2 * margin) * FINE
    density = draw_structure(structure, (fh, fw), fine_px, rng)
    wf_psf = airy_psf(optics.na, optics.wavelength_um, fine_px, oversample=1)
    sim_psf = airy_psf(optics.na * optics.gain, optics.wavelength_um, fine_px, oversample=1)
    wide = _bin(fftconvolve(density, wf_psf, mode="same"), FINE)
    sharp = _bin(fftconvolve(density, sim_psf, mode="same"), FINE // optics.gain)
    wide = np.clip(wide[margin : margin + h, margin : margin + w], 0, None)
    g = optics.gain
    sharp = np.clip(sharp[margin * g : (margin + h) * g, margin * g : (margin + w) * g], 0, None)
    scale = conditions.photons / (float(np.percentile(wide, 99.9)) or 1.0)
    wide, sharp = wide * scale, sharp * scale * g * g  # photons per camera pixel; target per camera-pixel area
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


# ------------------------------------------------------------------ qpi


#: Phase-object sources: procedural cells, random textures, grayscale images from a folder.
QPI_SOURCES = ("cells", "textures", "images")


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    n = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    return n / (n.std() + 1e-12)


def _cells(shape: tuple[int, int], pixel_um: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    thick = np.zeros(shape)
    area_um2 = h * w * pixel_um**2
    most = max(2, int(round(area_um2 / 180)))  # up to a dense, touching layer of cells
    for _ in range(int(rng.integers(1, most + 1))):
        cy, cx = rng.uniform(0.05 * h, 0.95 * h), rng.uniform(0.05 * w, 0.95 * w)
        a = rng.uniform(4, 12) / pixel_um
        b = a * rng.uniform(0.5, 1.0)
        ang = rng.uniform(0, math.pi)
        # irregular outline: modulate the radius with a few harmonics
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = 1 + sum(rng.normal(0, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
        u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / a
        v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / b
        r2 = (u**2 + v**2) / wobble**2
        body = np.sqrt(np.clip(1 - r2, 0, None)) * rng.uniform(0.4, 0.8)  # dome-like thickness
        nucleus_r = rng.uniform(0.3, 0.5)
        nuc = np.sqrt(np.clip(1 - ((u - rng.uniform(-0.2, 0.2)) ** 2 + v**2) / nucleus_r**2, 0, None)) * 0.5
        grains = gaussian_filter((rng.random(shape) < 0.004) * (r2 < 1), 0.25 / pixel_um) * 40
        texture = 0.08 * _smooth_noise(shape, 1.0 / pixel_um, rng) * (r2 < 1)
        thick += np.clip(body + nuc + grains + texture, 0, None) * (r2 < 1.05)
    return gaussian_filter(thick, 0.3 / pixel_um)


def _textures(shape: tuple[int, int], pixel_um: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    slope = rng.uniform(1.5, 3.0)
    spectrum = np.fft.fft2(rng.standard_normal(shape)) / f ** (slope / 2 + 0.5)
    spectrum[0, 0] = 0
    img = gaussian_filter(np.real(np.fft.ifft2(spectrum)), 0.3 / pixel_um, mode="wrap")
    if rng.random() < 0.5:  # sometimes a threshold-like, cell-cluster texture
        img = 1 / (1 + np.exp(-img / (img.std() * 0.3 + 1e-12)))
    return img


def load_grayscale_images(folder: str | Path) -> list[np.ndarray]:
    """All readable images in a folder as float64 grayscale arrays in [0, 1]."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"):
            continue
        try:
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("L"), dtype=np.float64) / 255.0)
        except OSError:
            continue
    if not images:
        raise ValueError(f"{folder}: no readable images (.jpg, .png, .tif, .bmp)")
    return images


def _from_image(shape: tuple[int, int], images: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import resize

    img = images[int(rng.integers(len(images)))]
    h, w = shape
    side = min(img.shape)
    crop = int(rng.uniform(0.5, 1.0) * side)
    y0 = int(rng.integers(0, img.shape[0] - crop + 1))
    x0 = int(rng.integers(0, img.shape[1] - crop + 1))
    patch = resize(img[y0 : y0 + crop, x0 : x0 + crop], (h, w), order=1, anti_aliasing=True)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch


def phase_map(
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics | None = None,
    images: list[np.ndarray] | None = None,
) -> np.ndarray:
    """A phase object in [0, ``max_phase``] rad.

    Parameters
    ----------
    source
        ``"cells"``, ``"textures"`` or ``"images"`` (needs ``images``).
    shape
        ``(H, W)``.
    """
    optics = optics or QPIOptics()
    if source == "cells":
        raw = _cells(shape, optics.pixel_um, rng)
    elif source == "textures":
        raw = _textures(shape, optics.pixel_um, rng)
    elif source == "images":
        if not images:
            raise ValueError("source 'images' needs images (napari-cvdm simulate --images DIR)")
        raw = _from_image(shape, images, rng)
    else:
        raise ValueError(f"unknown phase source {source!r}; choose from {', '.join(QPI_SOURCES)}")
    lo, hi = float(raw.min()), float(raw.max())
    scaled = (raw - lo) / (hi - lo) if hi > lo else np.zeros(shape)
    return scaled * optics.max_phase * rng.uniform(0.6, 1.0)


#: Noise σ of the qpi simulator (unit illumination), drawn log-uniformly by :func:`draw_noise`.
NOISE_RANGE = (0.003, 0.03)
#: Amplitude range of absorbing qpi objects (1 = transparent).
ABSORPTION_RANGE = (0.8, 1.0)


def draw_noise(rng: np.random.Generator, noise_range: tuple[float, float] = NOISE_RANGE) -> float:
    """A noise σ drawn log-uniformly from ``noise_range`` (unit illumination)."""
    lo, hi = np.log(noise_range)
    return float(np.exp(rng.uniform(lo, hi)))


def absorption_map(phase: np.ndarray, rng: np.random.Generator, pixel_um: float) -> np.ndarray:
    """Amplitude ``A`` in :data:`ABSORPTION_RANGE` for a phase map ``(H, W)``: half the time following the
    phase (stained or dense objects absorb where they are thick), half the time an independent smooth texture."""
    depth = rng.uniform(0.02, 1.0 - ABSORPTION_RANGE[0])
    if rng.random() < 0.5:
        shape = phase / (phase.max() + 1e-12)
    else:
        shape = _textures(phase.shape, pixel_um, rng)
        shape = (shape - shape.min()) / (np.ptp(shape) + 1e-12)
    return 1.0 - depth * shape


def crop_of_larger_field(shape: tuple[int, int], optics: QPIOptics) -> tuple[tuple[int, int], int]:
    """Shape of the simulated field and the context on each side: at least a quarter of the image and
    twice the Fresnel margin, so the camera's crop sees light from outside and no wrap-around."""
    context = max(max(shape) // 4, 2 * fresnel_margin((optics.dz_um,), optics.wavelength_um, optics.pixel_um))
    return (shape[0] + 2 * context, shape[1] + 2 * context), context


def camera_planes(
    phase: np.ndarray, amplitude: np.ndarray, context: int, shape: tuple[int, int], optics: QPIOptics
) -> np.ndarray:
    """Noise-free intensities ``(2, H, W)`` at (−dz, +dz) that a camera sees of a larger field.

    Parameters
    ----------
    phase, amplitude
        ``(H + 2c, W + 2c)`` object on the larger field.
    context
        ``c``: pixels of the field on each side of the camera's crop (wider than the Fresnel reach, so the
        periodic FFT's wrap-around never reaches the crop).
    shape
        ``(H, W)`` of the camera image.
    """
    field = phase_object(torch.from_numpy(phase), torch.from_numpy(amplitude))
    planes = defocus_stack(field, (-optics.dz_um, optics.dz_um), optics.wavelength_um, optics.pixel_um).numpy()
    return planes[:, context : context + shape[0], context : context + shape[1]]


@dataclass(frozen=True)
class QPIPair:
    """One simulated qpi pair: ``input`` ``(2, H, W)`` (−dz, +dz) and ``target`` phase ``(H, W)``, float32;
    ``amplitude`` ``(H, W)`` and the noise σ that was added."""

    input: np.ndarray
    target: np.ndarray
    source: str
    optics: QPIOptics
    amplitude: np.ndarray | None = None
    noise: float = 0.0


def simulate_qpi_pair(
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics | None = None,
    images: list[np.ndarray] | None = None,
    noise: float | None = None,
    absorbing: bool | None = None,
) -> QPIPair:
    """Simulate a defocused brightfield pair and its phase, as a camera crop of a larger field.

    Parameters
    ----------
    source
        Phase source (:data:`QPI_SOURCES`).
    shape
        Camera image ``(H, W)``.
    noise
        Noise σ (unit illumination); default: the optics' ``noise``, or drawn from :data:`NOISE_RANGE`.
    absorbing
        Whether the object absorbs (``A`` in :data:`ABSORPTION_RANGE`); default: 70 % of the draws.
    """
    optics = optics or QPIOptics()
    big, c = crop_of_larger_field(shape, optics)
    phase = phase_map(source, big, rng, optics, images)
    absorbing = bool(rng.random() < 0.7) if absorbing is None else absorbing
    amplitude = absorption_map(phase, rng, optics.pixel_um) if absorbing else np.ones(big)
    crop = (slice(c, c + shape[0]), slice(c, c + shape[1]))
    noise = optics.noise if noise is None else noise
    sigma = draw_noise(rng) if noise is None else float(noise)
    noisy = camera_planes(phase, amplitude, c, shape, optics) + rng.normal(0.0, sigma, size=(2, *shape))
    return QPIPair(
        input=noisy.astype(np.float32),
        target=phase[crop].astype(np.float32),
        source=source,
        optics=optics,
        amplitude=amplitude[crop].astype(np.float32),
        noise=sigma,
    )
