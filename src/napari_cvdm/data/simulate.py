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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from ..physics.fresnel import QPIOptics, defocused_pair
from ..physics.widefield import WidefieldOptics, airy_psf, camera_noise

__all__ = [
    "SR_STRUCTURES", "SR_HELDOUT_STRUCTURES", "QPI_SOURCES", "SRPair", "QPIPair", "PHOTON_RANGE", "draw_photons", "TEST_SEED",
    "VALIDATION_SEED", "write_simulated_pairs",
    "draw_structure", "simulate_sr_pair", "phase_map", "simulate_qpi_pair", "load_grayscale_images",
]

#: Seed of the default held-out test sets: no training run may use it.
TEST_SEED = 90_210_001
#: Seed of the validation sets (baseline parameters, validation of simulated training runs).
VALIDATION_SEED = 90_210_002

FINE = 4  # fine-grid sub-pixels per camera pixel and axis

# ------------------------------------------------------------------ drawing helpers


def _splat(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, weights: np.ndarray | float) -> None:
    """Add points to ``canvas`` with bilinear weights (points outside are dropped)."""
    h, w = canvas.shape
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), ys.shape)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        np.add.at(canvas, (yy[ok], xx[ok]), (wgt * weights)[ok])


def _curve(rng: np.random.Generator, start: np.ndarray, length_px: float, step_px: float,
           persistence_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random curve (worm-like chain) as densely spaced points."""
    n = max(2, int(length_px / step_px))
    angle0 = rng.uniform(0, 2 * math.pi)
    dtheta = rng.normal(0, math.sqrt(step_px / persistence_px), n)
    theta = angle0 + np.cumsum(dtheta)
    ys = start[0] + np.cumsum(step_px * np.sin(theta))
    xs = start[1] + np.cumsum(step_px * np.cos(theta))
    return ys, xs


def _draw_lines(canvas: np.ndarray, rng: np.random.Generator, count: int, length_px: tuple[float, float],
                persistence_px: float, brightness: tuple[float, float]) -> None:
    h, w = canvas.shape
    for _ in range(count):
        start = rng.uniform([-0.1 * h, -0.1 * w], [1.1 * h, 1.1 * w])
        ys, xs = _curve(rng, start, rng.uniform(*length_px), 0.5, persistence_px)
        _splat(canvas, ys, xs, rng.uniform(*brightness) * 0.5)


# ------------------------------------------------------------------ structures (fine grid, pixel p µm)


def _microtubules(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    c = np.zeros(shape)
    _draw_lines(c, rng, int(rng.integers(6, 20)), (3 / p, 15 / p), 8 / p, (0.6, 1.0))
    return gaussian_filter(c, 0.0125 / p)  # ~25 nm wide tubes


def _ccps(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    c = np.zeros(shape)
    area_um2 = shape[0] * shape[1] * p * p
    n = int(rng.uniform(1.0, 3.0) * area_um2)
    for _ in range(max(n, 3)):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radius = rng.uniform(0.04, 0.09) / p
        bright = rng.uniform(0.3, 1.0)
        if rng.random() < 0.5:  # ring
            k = max(16, int(2 * math.pi * radius * 2))
            a = np.linspace(0, 2 * math.pi, k, endpoint=False)
            _splat(c, cy + radius * np.sin(a), cx + radius * np.cos(a), bright * 6 / k * radius)
        else:  # punctum
            _splat(c, np.array([cy]), np.array([cx]), np.array([bright * radius * 3]))
    return gaussian_filter(c, 0.015 / p)


def _er(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial import Delaunay

    h, w = shape
    n = int(rng.uniform(0.8, 1.6) * h * w * p * p) + 8
    pts = rng.uniform([-0.05 * h, -0.05 * w], [1.05 * h, 1.05 * w], size=(n, 2))
    c = np.zeros(shape)
    edges = set()
    for simplex in Delaunay(pts).simplices:
        for i in range(3):
            a, b = sorted((simplex[i], simplex[(i + 1) % 3]))
            edges.add((a, b))
    for a, b in edges:
        if rng.random() < 0.35:  # keep a sparse polygonal network
            continue
        seg = pts[b] - pts[a]
        length = float(np.hypot(*seg))
        if length > 2.5 / p:
            continue
        t = np.linspace(0, 1, max(2, int(length / 0.5)))
        bow = rng.normal(0, 0.08) * length * np.sin(math.pi * t)  # slightly curved tubules
        normal = np.array([-seg[1], seg[0]]) / max(length, 1e-9)
        ys = pts[a, 0] + t * seg[0] + bow * normal[0]
        xs = pts[a, 1] + t * seg[1] + bow * normal[1]
        _splat(c, ys, xs, rng.uniform(0.5, 1.0) * 0.5)
    tubules = gaussian_filter(c, 0.02 / p)
    sheets = np.zeros(shape)
    for _ in range(int(rng.integers(0, 3))):
        _splat(sheets, np.array([rng.uniform(0, h)]), np.array([rng.uniform(0, w)]), np.array([1.0]))
    sheets = gaussian_filter(sheets, 0.25 / p)
    if sheets.max() > 0:
        sheets *= 0.3 * tubules.max() / sheets.max()
    return tubules + sheets


def _actin(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    c = np.zeros(shape)
    _draw_lines(c, rng, int(rng.integers(40, 120)), (2 / p, 10 / p), 30 / p, (0.3, 1.0))
    return gaussian_filter(c, 0.0075 / p)


def _blobs(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    c = np.zeros(shape)
    n = int(rng.integers(5, 25))
    _splat(c, rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n), rng.uniform(0.3, 1.0, n))
    out = np.zeros(shape)
    for sigma_um in (0.05, 0.1, 0.2):
        out += gaussian_filter(c * (rng.random(c.shape) < 0.5), sigma_um / p) * sigma_um**2
    return out


#: Structure classes of the sr simulator (name → generator on a fine grid).
SR_STRUCTURES: dict[str, Callable[[tuple[int, int], float, np.random.Generator], np.ndarray]] = {
    "microtubules": _microtubules,
    "ccps": _ccps,
    "er": _er,
    "actin": _actin,
    "blobs": _blobs,
}


def _mitochondria(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Outer-membrane label of mitochondria: hollow tubes 0.25–0.45 µm wide, 1–4 µm long."""
    from scipy.ndimage import distance_transform_edt

    h, w = shape
    out = np.zeros(shape)
    area_um2 = h * w * p * p
    for _ in range(max(2, int(rng.uniform(0.25, 0.6) * area_um2))):
        axis = np.zeros(shape)
        start = rng.uniform([0, 0], [h, w])
        ys, xs = _curve(rng, start, rng.uniform(1.0, 4.0) / p, 0.5, 3.0 / p)
        _splat(axis, ys, xs, 1.0)
        radius = rng.uniform(0.125, 0.225) / p
        dist = distance_transform_edt(axis <= 0)
        out += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((dist - radius) / (0.02 / p)) ** 2)
    return out


def _nuclear_pores(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Nuclear pore complexes: rings of 8 puncta, 107 nm across, 70 % of them labelled."""
    c = np.zeros(shape)
    area_um2 = shape[0] * shape[1] * p * p
    for _ in range(max(3, int(rng.uniform(5.0, 15.0) * area_um2))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        angles = rng.uniform(0, math.pi / 4) + np.arange(8) * math.pi / 4
        keep = rng.random(8) < 0.7
        radius = 0.0535 / p
        _splat(c, cy + radius * np.sin(angles[keep]), cx + radius * np.cos(angles[keep]), rng.uniform(0.5, 1.0))
    return gaussian_filter(c, 0.01 / p)


#: Structure classes that no bundled model was trained on, for testing generalisation only.
SR_HELDOUT_STRUCTURES: dict[str, Callable[[tuple[int, int], float, np.random.Generator], np.ndarray]] = {
    "mitochondria": _mitochondria,
    "nuclear-pores": _nuclear_pores,
}


def draw_structure(name: str, shape: tuple[int, int], pixel_um: float, rng: np.random.Generator) -> np.ndarray:
    """Fluorophore density of one structure class on a grid, normalised to max 1.

    Parameters
    ----------
    name
        One of :data:`SR_STRUCTURES` or :data:`SR_HELDOUT_STRUCTURES`.
    shape
        ``(H, W)`` of the grid.
    pixel_um
        Pixel size of the grid, µm.
    """
    generators = {**SR_STRUCTURES, **SR_HELDOUT_STRUCTURES}
    if name not in generators:
        raise ValueError(f"unknown structure {name!r}; choose from {', '.join(generators)}")
    density = generators[name](shape, pixel_um, rng)
    peak = float(density.max())
    return density / peak if peak > 0 else density


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


def simulate_sr_pair(structure: str, shape: tuple[int, int], photons: float, rng: np.random.Generator,
                     optics: WidefieldOptics | None = None) -> SRPair:
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
    wide = np.clip(wide[margin:margin + h, margin:margin + w], 0, None)
    g = optics.gain
    sharp = np.clip(sharp[margin * g:(margin + h) * g, margin * g:(margin + w) * g], 0, None)
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
    patch = resize(img[y0:y0 + crop, x0:x0 + crop], (h, w), order=1, anti_aliasing=True)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch


def phase_map(source: str, shape: tuple[int, int], rng: np.random.Generator, optics: QPIOptics | None = None,
              images: list[np.ndarray] | None = None) -> np.ndarray:
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


def simulate_qpi_pair(source: str, shape: tuple[int, int], rng: np.random.Generator,
                      optics: QPIOptics | None = None, images: list[np.ndarray] | None = None) -> QPIPair:
    """Simulate a defocused brightfield pair and its phase."""
    optics = optics or QPIOptics()
    phase = phase_map(source, shape, rng, optics, images)
    clean = defocused_pair(phase, optics)
    noisy = clean + rng.normal(0.0, optics.noise, size=clean.shape)
    return QPIPair(input=noisy.astype(np.float32), target=phase.astype(np.float32), source=source, optics=optics)


def write_simulated_pairs(task: Any, folder: str | Path, n: int, seed: int, optics: Any, size: int | None = None,
                          classes: Sequence[str] | None = None, images: list[np.ndarray] | None = None,
                          level: float | None = None, progress: Callable[[int, int], None] | None = None
                          ) -> dict[str, Any]:
    """Write ``n`` simulated pairs as ``DIR/inputs/<class>_<i>.tif`` and ``DIR/targets/<class>_<i>.tif`` (float32,
    pixel sizes in the metadata) and ``DIR/simulation.json``; returns that record.

    Parameters
    ----------
    task
        A :class:`~napari_cvdm.tasks.Task`: it simulates the pairs.
    classes
        Cycled through (default: the task's training classes, plus ``images`` when images are given).
    level
        A fixed signal level (``sr``: photons per pixel) instead of the training range.
    """
    import json

    from .tiff import write_tiff

    folder = Path(folder)
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    classes = list(classes or task.default_classes(with_images=bool(images)))
    size = size or task.simulate_size
    rng = np.random.default_rng(seed)
    px = (optics.pixel_um, optics.pixel_um)
    for i in range(n):
        cls = classes[i % len(classes)]
        inp, tgt = task.simulate(cls, size, rng, optics, images, level)
        name = f"{cls}_{i:04d}.tif"
        write_tiff(folder / "inputs" / name, inp, pixel_size_um=px, axes="YX" if inp.ndim == 2 else "CYX")
        write_tiff(folder / "targets" / name, tgt, pixel_size_um=task.output_pixel_size(px))
        if progress is not None:
            progress(i + 1, n)
    record = {"task": task.name, "n": n, "seed": seed, "optics": optics.to_dict(), "classes": classes, "size": size,
              "level": level}
    (folder / "simulation.json").write_text(json.dumps(record, indent=2))
    return record
