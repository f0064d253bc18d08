"""Simulated training and test pairs for both tasks. Lengths in µm.

``sr``: fluorescent structures are drawn on a fine grid (a quarter of the
camera pixel), blurred by the widefield Airy PSF and integrated over camera
pixels (4×4 binning), then put through the camera model; the target is the same
structure blurred by a PSF half as wide and integrated over pixels half the
camera's (2×2 binning). Input in photo-electrons; target noise-free, in the same
photon density (per camera-pixel area) and without background.

``qpi``: a pure phase object ``exp(iφ)`` (φ in [0, 3.5] rad) under unit
illumination is propagated to ``−dz`` and ``+dz`` (Fresnel, mirror-padded) and
Gaussian noise is added; the target is φ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from ..physics.fresnel import QPIOptics, defocused_pair
from ..physics.widefield import WidefieldOptics, airy_psf, camera_noise
from .structures import SR_HELDOUT_STRUCTURES, SR_STRUCTURES, draw_structure

__all__ = [
    "SR_STRUCTURES",
    "SR_HELDOUT_STRUCTURES",
    "QPI_SOURCES",
    "SRPair",
    "QPIPair",
    "PHOTON_RANGE",
    "draw_photons",
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

#: Signal range of the sr simulator, photons per pixel (drawn log-uniformly by :func:`draw_photons`).
PHOTON_RANGE = (15.0, 600.0)


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


def simulate_sr_pair(
    structure: str,
    shape: tuple[int, int],
    photons: float,
    rng: np.random.Generator,
    optics: WidefieldOptics | None = None,
) -> SRPair:
    """Simulate a widefield input and its SIM-like target.

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
    if photons <= 0:
        raise ValueError(f"photons must be positive, got {photons}")
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
    level = float(np.percentile(wide, 99.9)) or 1.0
    scale = photons / level
    noisy = camera_noise(wide * scale, optics.background_fraction * photons, optics.read_noise, rng)
    target = (sharp * scale * g * g).astype(np.float32)  # photons per camera-pixel area
    return SRPair(input=noisy, target=target, structure=structure, photons=photons, optics=optics)


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
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
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


@dataclass(frozen=True)
class QPIPair:
    """One simulated qpi pair: ``input`` ``(2, H, W)`` (−dz, +dz) and ``target`` phase ``(H, W)``, float32."""

    input: np.ndarray
    target: np.ndarray
    source: str
    optics: QPIOptics


def simulate_qpi_pair(
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics | None = None,
    images: list[np.ndarray] | None = None,
) -> QPIPair:
    """Simulate a defocused brightfield pair and its phase."""
    optics = optics or QPIOptics()
    phase = phase_map(source, shape, rng, optics, images)
    clean = defocused_pair(phase, optics)
    noisy = clean + rng.normal(0.0, optics.noise, size=clean.shape)
    return QPIPair(input=noisy.astype(np.float32), target=phase.astype(np.float32), source=source, optics=optics)
