"""Fluorescent structures for the ``sr`` simulator, drawn on a fine grid (lengths in µm).

Training classes (:data:`SR_STRUCTURES`): microtubule-like filaments, CCP-like puncta and rings, ER-like
networks, dense F-actin-like meshes, smooth blobs, whole cells (outlines with a cortical mesh, nuclei, stress
fibre bundles and a mixture of the other structures inside, unevenly labelled, cut by the border), vesicles
(puncta of many sizes, sparse to dense, often clustered) and mixtures of two or three classes in one field. Test-only
classes (:data:`SR_HELDOUT_STRUCTURES`: mitochondria, nuclear pores, focal adhesions, Golgi) are never drawn for
training, so that evaluation measures generalisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["SR_STRUCTURES", "SR_HELDOUT_STRUCTURES", "draw_structure", "uneven_labelling"]


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


def _curve(
    rng: np.random.Generator, start: np.ndarray, length_px: float, step_px: float, persistence_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random curve (worm-like chain) as densely spaced points."""
    n = max(2, int(length_px / step_px))
    angle0 = rng.uniform(0, 2 * math.pi)
    dtheta = rng.normal(0, math.sqrt(step_px / persistence_px), n)
    theta = angle0 + np.cumsum(dtheta)
    ys = start[0] + np.cumsum(step_px * np.sin(theta))
    xs = start[1] + np.cumsum(step_px * np.cos(theta))
    return ys, xs


def _draw_lines(
    canvas: np.ndarray,
    rng: np.random.Generator,
    count: int,
    length_px: tuple[float, float],
    persistence_px: float,
    brightness: tuple[float, float],
) -> None:
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


def _peak1(density: np.ndarray) -> np.ndarray:
    """``density`` scaled to a maximum of 1 (zero stays zero)."""
    peak = float(density.max())
    return density / peak if peak > 0 else density


def uneven_labelling(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth log-normal field (median 1, log-σ 0.3–0.7, correlation 0.3–1.5 µm) that makes labelling density
    and brightness vary along structures."""
    field = gaussian_filter(rng.standard_normal(shape), rng.uniform(0.3, 1.5) / p, mode="wrap")
    return np.exp(rng.uniform(0.3, 0.7) * field / (field.std() + 1e-12))


def _cell_mask(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """A cell's footprint (bool): a smooth random outline 5–12 µm in radius, centred anywhere in the field or
    beyond its border (so cells are often cut by it)."""
    h, w = shape
    cy, cx = rng.uniform([-0.2 * h, -0.2 * w], [1.2 * h, 1.2 * w])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta, r = np.arctan2(yy - cy, xx - cx), np.hypot(yy - cy, xx - cx) * p
    outline = np.full(shape, rng.uniform(5.0, 12.0))
    for k in range(2, 6):
        outline *= 1 + rng.normal(0, 0.12 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return r < outline


def cytoplasm_footprint(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """The cytoplasm of one to three cells as a smooth field in [0, 1] (a footprint of :func:`_cell_mask`
    outlines covering at least a third of the field where it can, edges softened over 0.1–0.3 µm): where a
    cell's structures may lie and where its diffuse, in-focus labelling glows.

    Parameters
    ----------
    shape
        ``(H, W)`` of the grid.
    p
        Pixel size of the grid, µm.
    rng
        Random generator (outlines and softening drawn from it).
    """
    inside = np.zeros(shape, bool)
    for _ in range(3):
        inside |= _cell_mask(shape, p, rng)
        if inside.mean() >= 1 / 3:
            break
    return np.clip(gaussian_filter(inside.astype(np.float64), rng.uniform(0.1, 0.3) / p), 0.0, 1.0)


def _nucleus_mask(inside: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """An elliptical nucleus (radii 2–4 µm) centred on a random point of the cell (empty for no cell)."""
    ys, xs = np.nonzero(inside)
    if ys.size == 0:
        return np.zeros_like(inside)
    k = int(rng.integers(ys.size))
    yy, xx = np.mgrid[0 : inside.shape[0], 0 : inside.shape[1]].astype(np.float64)
    a, b, t = rng.uniform(2.0, 4.0) / p, rng.uniform(2.0, 4.0) / p, rng.uniform(0, math.pi)
    u = (yy - ys[k]) * math.cos(t) + (xx - xs[k]) * math.sin(t)
    v = -(yy - ys[k]) * math.sin(t) + (xx - xs[k]) * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 < 1


def _stress_fibres(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """A few straight bundles 0.1–0.25 µm wide and 4–15 µm long, roughly parallel."""
    c = np.zeros(shape)
    angle = rng.uniform(0, math.pi)
    for _ in range(int(rng.integers(2, 8))):
        a = angle + rng.normal(0, 0.15)
        length = rng.uniform(4.0, 15.0) / p
        y0, x0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        t = np.arange(0, length, 0.5)
        _splat(c, y0 + t * math.sin(a), x0 + t * math.cos(a), rng.uniform(0.5, 1.0))
    return gaussian_filter(c, rng.uniform(0.04, 0.1) / p)


def _cells(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Whole cells: a dense cortical actin mesh along the outline, a nucleus (dark, or a labelled envelope),
    microtubules, ER or CCPs inside, sometimes stress fibres; labelling uneven along everything."""
    from scipy.ndimage import distance_transform_edt

    inside = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 3))):
        inside |= _cell_mask(shape, p, rng)
    nucleus = _nucleus_mask(inside, p, rng)
    depth = distance_transform_edt(inside) * p  # µm from the outline
    cortex = inside & (depth < rng.uniform(0.3, 0.8))
    out = _peak1(_actin(shape, p, rng)) * cortex
    content = SR_STRUCTURES[str(rng.choice(["microtubules", "er", "ccps"]))](shape, p, rng)
    out += _peak1(content) * rng.uniform(0.4, 1.0) * (inside & ~nucleus)
    if rng.random() < 0.5:
        out += _peak1(_stress_fibres(shape, p, rng)) * inside * rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:  # a labelled nuclear envelope, dimmer than the rest
        rim = distance_transform_edt(nucleus) * p
        out += rng.uniform(0.1, 0.3) * np.exp(-0.5 * ((rim - 0.05) / 0.03) ** 2) * nucleus
    return gaussian_filter(out, 0.005 / p) * uneven_labelling(shape, p, rng)


def _vesicles(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Vesicles and receptor clusters: puncta 30–200 nm across at 2–40 per µm² (log-uniform), up to 70 % of them
    gathered in clusters 0.1–0.5 µm wide, brightness log-normal."""
    h, w = shape
    n = max(3, int(math.exp(rng.uniform(math.log(2.0), math.log(40.0))) * h * w * p * p))
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    clustered = int(n * rng.uniform(0.0, 0.7))
    if clustered:
        centres = rng.uniform([0, 0], [h, w], size=(max(1, clustered // int(rng.integers(3, 15))), 2))
        which = rng.integers(len(centres), size=clustered)
        spread = rng.uniform(0.05, 0.25) / p
        ys[:clustered] = centres[which, 0] + rng.normal(0, spread, clustered)
        xs[:clustered] = centres[which, 1] + rng.normal(0, spread, clustered)
    bright = rng.lognormal(0.0, 0.4, n)
    size_bin = rng.integers(3, size=n)
    out = np.zeros(shape)
    for k, sigma_um in enumerate((0.0125, 0.025, 0.05)):  # 30, 60, 120 nm FWHM (plus the vesicle's own extent)
        c = np.zeros(shape)
        pick = size_bin == k
        _splat(c, ys[pick], xs[pick], bright[pick])
        out += gaussian_filter(c, sigma_um / p) * (sigma_um / 0.0125) ** 2
    return out


def _mixtures(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Two or three of the other training classes (whole cells excepted) overlaid in one field, each at its own
    brightness (0.3–1 of the brightest)."""
    names = rng.choice(
        ["microtubules", "ccps", "er", "actin", "blobs", "vesicles"], size=int(rng.integers(2, 4)), replace=False
    )
    return sum(_peak1(SR_STRUCTURES[str(n)](shape, p, rng)) * rng.uniform(0.3, 1.0) for n in names)


#: Structure classes of the sr simulator (name → generator on a fine grid).
SR_STRUCTURES: dict[str, Callable[[tuple[int, int], float, np.random.Generator], np.ndarray]] = {
    "microtubules": _microtubules,
    "ccps": _ccps,
    "er": _er,
    "actin": _actin,
    "blobs": _blobs,
    "cells": _cells,
    "vesicles": _vesicles,
    "mixtures": _mixtures,
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


def _focal_adhesions(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Focal adhesions: 10–40 bright streaks 0.2–0.5 µm wide and 0.5–3 µm long, pointing away from a cell centre
    off to one side, over a dim diffuse cytoplasm."""
    h, w = shape
    c = np.zeros(shape)
    cy, cx = rng.uniform([-0.5 * h, -0.5 * w], [1.5 * h, 1.5 * w])
    for _ in range(int(rng.integers(10, 40))):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        a = math.atan2(y0 - cy, x0 - cx) + rng.normal(0, 0.2)
        t = np.arange(0, rng.uniform(0.5, 3.0) / p, 0.5)
        one = np.zeros(shape)
        _splat(one, y0 + t * math.sin(a), x0 + t * math.cos(a), 1.0)
        c += gaussian_filter(one, rng.uniform(0.08, 0.2) / p) * rng.uniform(0.4, 1.0)
    diffuse = gaussian_filter(rng.random(shape), 1.0 / p)
    return _peak1(c) + 0.1 * _peak1(diffuse)


def _golgi(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """A Golgi apparatus: a compact cluster (1.5–3 µm) of curved cisternal ribbons 0.5–2 µm long with vesicles
    (60–100 nm) around it."""
    h, w = shape
    c = np.zeros(shape)
    for _ in range(int(rng.integers(1, 3))):
        cy, cx, radius = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w), rng.uniform(1.5, 3.0) / p
        for _ in range(int(rng.integers(8, 25))):
            start = np.array([cy, cx]) + rng.normal(0, radius / 2, 2)
            ys, xs = _curve(rng, start, rng.uniform(0.5, 2.0) / p, 0.5, 1.0 / p)
            _splat(c, ys, xs, rng.uniform(0.3, 1.0))
        n = int(rng.integers(20, 80))
        vy, vx = cy + rng.normal(0, radius, n), cx + rng.normal(0, radius, n)
        _splat(c, vy, vx, rng.uniform(0.5, 1.5, n) * 0.08 / p)
    return gaussian_filter(c, 0.03 / p)


#: Structure classes that no bundled model was trained on, for testing generalisation only.
SR_HELDOUT_STRUCTURES: dict[str, Callable[[tuple[int, int], float, np.random.Generator], np.ndarray]] = {
    "mitochondria": _mitochondria,
    "nuclear-pores": _nuclear_pores,
    "focal-adhesions": _focal_adhesions,
    "golgi": _golgi,
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
    return _peak1(generators[name](shape, pixel_um, rng))
