"""Simulated ``qpi`` pairs: a thin object ``A·exp(iφ)`` (φ in [0, 3.5] rad, weak absorption A in [0.8, 1]) under unit
illumination is drawn on a field larger than the camera's and propagated to ``−dz`` and ``+dz`` (Fresnel); the
camera image is the centre crop, so light crosses its borders as in a real microscope (no mirror or wrap-around
borders). Gaussian noise with σ drawn from :data:`NOISE_RANGE` is added; the target is φ on the crop. Lengths in µm.
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

__all__ = [
    "QPI_SOURCES",
    "QPIPair",
    "NOISE_RANGE",
    "ABSORPTION_RANGE",
    "STRONG_ABSORPTION_RANGE",
    "draw_noise",
    "absorption_map",
    "fine_absorption_map",
    "crop_of_larger_field",
    "camera_planes",
    "phase_map",
    "simulate_qpi_pair",
    "simulate_fine_absorbing_pair",
    "load_grayscale_images",
]


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

#: Amplitude range of strongly absorbing objects (stained or pigmented cells, dense tissue): held-out only.
STRONG_ABSORPTION_RANGE = (0.4, 1.0)


def draw_noise(rng: np.random.Generator, noise_range: tuple[float, float] = NOISE_RANGE) -> float:
    """A noise σ drawn log-uniformly from ``noise_range`` (unit illumination)."""
    lo, hi = np.log(noise_range)
    return float(np.exp(rng.uniform(lo, hi)))


def absorption_map(
    phase: np.ndarray,
    rng: np.random.Generator,
    pixel_um: float,
    amplitude_range: tuple[float, float] = ABSORPTION_RANGE,
) -> np.ndarray:
    """Amplitude ``A`` in ``amplitude_range`` (its least value down to its greatest, at most 1) for a phase map
    ``(H, W)``: half the time following the phase (stained or dense objects absorb where they are thick), half the
    time an independent smooth texture."""
    depth = rng.uniform(0.02, amplitude_range[1] - amplitude_range[0])
    if rng.random() < 0.5:
        shape = phase / (phase.max() + 1e-12)
    else:
        shape = _textures(phase.shape, pixel_um, rng)
        shape = (shape - shape.min()) / (np.ptp(shape) + 1e-12)
    return amplitude_range[1] - depth * shape


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


def fine_absorption_map(
    shape: tuple[int, int],
    rng: np.random.Generator,
    pixel_um: float,
    images: list[np.ndarray] | None = None,
    amplitude_range: tuple[float, float] = STRONG_ABSORPTION_RANGE,
) -> np.ndarray:
    """Amplitude ``A`` ``(H, W)`` with fine detail, independent of the phase (stained granules, pigment, dense
    tissue): a photograph's crop when ``images`` are given, else a random texture; its depth drawn from 0.1 to the
    whole of ``amplitude_range``."""
    texture = _from_image(shape, images, rng) if images else _textures(shape, pixel_um, rng)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-12)
    lo, hi = amplitude_range
    return hi - rng.uniform(min(0.1, hi - lo), hi - lo) * texture


def _camera_pair(
    phase: np.ndarray,
    amplitude: np.ndarray,
    c: int,
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics,
    noise: float | None,
) -> QPIPair:
    """The camera's noisy crop ``shape`` of an object drawn on the larger field with ``c`` pixels of context on
    each side (:func:`crop_of_larger_field`)."""
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


def simulate_qpi_pair(
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics | None = None,
    images: list[np.ndarray] | None = None,
    noise: float | None = None,
    absorbing: bool | None = None,
    absorption_range: tuple[float, float] = ABSORPTION_RANGE,
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
        Whether the object absorbs; default: 70 % of the draws.
    absorption_range
        The amplitude ``A`` of absorbing objects spans part of this range (1 = transparent).
    """
    optics = optics or QPIOptics()
    big, c = crop_of_larger_field(shape, optics)
    phase = phase_map(source, big, rng, optics, images)
    absorbing = bool(rng.random() < 0.7) if absorbing is None else absorbing
    amplitude = absorption_map(phase, rng, optics.pixel_um, absorption_range) if absorbing else np.ones(big)
    return _camera_pair(phase, amplitude, c, source, shape, rng, optics, noise)


def simulate_fine_absorbing_pair(
    source: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    optics: QPIOptics | None = None,
    images: list[np.ndarray] | None = None,
    noise: float | None = None,
    absorption_range: tuple[float, float] = STRONG_ABSORPTION_RANGE,
) -> QPIPair:
    """Like :func:`simulate_qpi_pair`, for an object whose absorption has fine detail of its own
    (:func:`fine_absorption_map`; a photograph's when ``images`` are given) — what two planes can mistake for
    phase."""
    optics = optics or QPIOptics()
    big, c = crop_of_larger_field(shape, optics)
    phase = phase_map(source, big, rng, optics, images)
    amplitude = fine_absorption_map(big, rng, optics.pixel_um, images, absorption_range)
    return _camera_pair(phase, amplitude, c, source, shape, rng, optics, noise)
