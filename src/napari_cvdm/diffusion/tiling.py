"""Overlapping tiles blended with a smooth window, for networks applied to images of any size.

The sampler calls the denoiser through :func:`tiled` at **every** step, so the
blended ε estimate is one smooth field and the samples have no seams; the noise
itself is drawn for the whole image. Tiles overlap by ``overlap`` pixels and
are weighted by a separable window that ramps (raised cosine) across the
overlap and is flat inside, so every pixel's weights sum to a positive number
and the blend is a convex combination of the tiles' outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "tile_starts",
    "tiled_area",
    "balanced_tile",
    "blend_window",
    "tiled",
    "tiled_denoiser",
    "default_overlap",
    "DEFAULT_OVERLAP_FRACTION",
    "MAX_OVERLAP_STRIDES",
]

#: Overlap as a fraction of the tile side when none is given ...
DEFAULT_OVERLAP_FRACTION = 0.25
#: ... and at most this many network strides (128 output pixels for the ``sr`` denoiser, 16 for its λ U-Net): what
#: the blend needs is set by the network's reach, not by the tile, so large tiles do not recompute a quarter of
#: themselves. Tiles differ from the whole image mostly through their GroupNorm statistics, not their borders: the
#: bundled ``sr`` denoiser's ε̂ on 768² tiles has the same error against the true ε with overlaps of 128 and 256
#: (to 1 %, three structures, three noise levels) and λ(x) the same 0.5 % difference from the whole image's with
#: overlaps of 16 to 256 (``runs/perf16/tile_truth.py``, ``lam_overlap.py``; docs/performance.md).
MAX_OVERLAP_STRIDES = 8


def default_overlap(tile: int, stride: int) -> int:
    """The overlap used when none is given: a quarter of the tile, at most :data:`MAX_OVERLAP_STRIDES` strides."""
    return min(int(tile * DEFAULT_OVERLAP_FRACTION), MAX_OVERLAP_STRIDES * stride)


def tile_starts(size: int, tile: int, overlap: int, stride: int = 1) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap`` pixels shared.

    Offsets are multiples of ``stride`` (the network's down-sampling factor) except possibly the last, which
    is ``size − tile`` so that the last tile ends at the border; ``size`` and ``tile`` must be multiples of
    ``stride``.
    """
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got overlap {overlap} for tile {tile}")
    step = max(stride, (tile - overlap) // stride * stride)
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def tiled_area(shape: tuple[int, int], tile: int, stride: int, overlap: int | None = None) -> int:
    """Pixels the network computes per pass when ``shape`` ``(H, W)`` is cut into tiles of side ``tile``
    overlapping by ``overlap`` (``None``: :func:`default_overlap`): ``H·W`` without tiling, more with it (the
    overlaps are computed twice)."""
    h, w = (min(tile, side) for side in shape)
    overlap = default_overlap(tile, stride) if overlap is None else overlap
    return len(tile_starts(shape[0], h, overlap, stride)) * len(tile_starts(shape[1], w, overlap, stride)) * h * w


def balanced_tile(shape: tuple[int, int], largest: int, stride: int, overlap: int | None = None) -> int:
    """The tile side, at most ``largest`` and at least half of it (multiples of ``stride``), whose tiles cover
    ``shape`` ``(H, W)`` with the fewest computed pixels (:func:`tiled_area` with ``overlap``; ties go to the
    larger tile).

    The largest tile that fits the memory budget rarely divides the image evenly: the last tile then shares much
    of itself with its neighbour. With 256-pixel overlaps, 8192² output pixels in tiles of 1488 are 7 per side,
    the last overlapping by 944 pixels (1.62× the image computed); tiles of 1392 cover it 7 per side with the
    same overlaps (1.41×): 13 % less work and smaller activations.
    """
    if largest < stride or largest % stride:
        raise ValueError(f"the tile side ({largest}) must be a positive multiple of the network's stride ({stride})")
    candidates = range(largest, max(stride, largest // 2 // stride * stride) - 1, -stride)
    return min(candidates, key=lambda tile: (tiled_area(shape, tile, stride, overlap), -tile))


def blend_window(
    tile: int, overlap: int, at_start: bool, at_end: bool, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """1-D weights ``(tile,)``: a raised-cosine ramp over ``overlap`` pixels at the sides that touch another
    tile, flat (1) elsewhere and at the image border."""
    w = torch.ones(tile, device=device, dtype=dtype)
    if overlap > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(overlap, device=device, dtype=dtype) + 0.5) / overlap)
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def tiled(
    fn: Callable[..., torch.Tensor],
    tile: int,
    overlap: int,
    stride: int = 1,
    after_tile: Callable[[], None] | None = None,
) -> Callable[..., torch.Tensor]:
    """Wrap ``fn(*maps) -> (B, C, H, W)`` (all ``maps`` shaped ``(B, ·, H, W)``) to run on overlapping tiles.

    Parameters
    ----------
    fn
        A fully convolutional function of image-shaped tensors.
    tile
        Tile side in pixels (a multiple of ``stride``).
    overlap
        Pixels shared by neighbouring tiles (blended).
    stride
        The network's down-sampling factor; tile offsets are multiples of it where possible.
    after_tile
        Called after every tile (it may raise, e.g. to cancel within one tile of a large image).
    """
    layout = _layouts(tile, overlap, stride)

    def run(*maps: torch.Tensor) -> torch.Tensor:
        h, w = maps[0].shape[-2:]
        if h <= tile and w <= tile:
            return fn(*maps)
        th, tw = min(tile, h), min(tile, w)
        tiles, inv_weight = layout(h, w, maps[0].device, maps[0].dtype)
        out = None
        for y, x, win in tiles:
            part = fn(*(m[..., y : y + th, x : x + tw] for m in maps))
            if out is None:
                out = torch.zeros((*part.shape[:2], h, w), device=part.device, dtype=part.dtype)
            out[..., y : y + th, x : x + tw].addcmul_(part, win)
            del part
            if after_tile is not None:
                after_tile()
        return out.mul_(inv_weight)

    return run


def _layouts(tile: int, overlap: int, stride: int) -> Callable[..., tuple[list, torch.Tensor]]:
    """``layout(h, w, device, dtype)``: the tiles ``(y, x, window)`` of an ``h × w`` image and the inverse of their
    summed windows (made once per image shape, not per step).

    Raises
    ------
    ValueError
        A tile side that is not a positive multiple of ``stride``.
    """
    if tile < 1 or tile % stride:
        raise ValueError(f"the tile side ({tile}) must be a positive multiple of the network's stride ({stride})")
    weights: dict[tuple, torch.Tensor] = {}

    def layout(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[list, torch.Tensor]:
        th, tw = min(tile, h), min(tile, w)
        ys, xs = tile_starts(h, th, overlap, stride), tile_starts(w, tw, overlap, stride)
        wys = [blend_window(th, overlap, i == 0, i == len(ys) - 1, device, dtype) for i in range(len(ys))]
        wxs = [blend_window(tw, overlap, i == 0, i == len(xs) - 1, device, dtype) for i in range(len(xs))]
        tiles = [(y, x, (wy[:, None] * wx[None, :])[None, None]) for y, wy in zip(ys, wys) for x, wx in zip(xs, wxs)]
        key = (h, w, device, dtype)
        if key not in weights:
            total = torch.zeros((1, 1, h, w), device=device, dtype=dtype)
            for y, x, win in tiles:
                total[..., y : y + th, x : x + tw] += win
            weights[key] = total.reciprocal_()
        return tiles, weights[key]

    return layout


def tiled_denoiser(
    denoiser: Any, tile: int, overlap: int, stride: int = 1, after_tile: Callable[[], None] | None = None
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]], torch.Tensor]:
    """``run(z, x, gamma, chunks) -> ε̂``: the denoiser (one with ``noise_embedding``, as
    :class:`~napari_cvdm.diffusion.denoiser.Denoiser`) on overlapping tiles as :func:`tiled` blends them, for every
    sample at once — ``z`` ``(N, C, H, W)``, ``x`` and ``gamma`` ``(1, ·, H, W)``, ``chunks`` the ``(start, stop)``
    of the samples denoised together. Tile by tile, the noise-level embedding (the FiLM maps, the same for every
    sample) is computed once and shared by all chunks, instead of once per chunk and tile; ``after_tile`` is called
    after every chunk of every tile."""
    layout = _layouts(tile, overlap, stride)

    def run(z: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, chunks: list[tuple[int, int]]) -> torch.Tensor:
        h, w = z.shape[-2:]
        th, tw = min(tile, h), min(tile, w)
        tiles, inv_weight = layout(h, w, z.device, z.dtype)
        out = None
        for y, x0, win in tiles:
            area = (..., slice(y, y + th), slice(x0, x0 + tw))
            g, xt = gamma[area], x[area]
            films = denoiser.noise_embedding(g)
            for a, b in chunks:
                part = denoiser(z[a:b][area], xt.expand(b - a, -1, -1, -1), g.expand(b - a, -1, -1, -1), films=films)
                if out is None:
                    out = torch.zeros((z.shape[0], part.shape[1], h, w), device=part.device, dtype=part.dtype)
                out[a:b][area].addcmul_(part, win)
                del part
                if after_tile is not None:
                    after_tile()
            del films
        return out.mul_(inv_weight)

    return run
