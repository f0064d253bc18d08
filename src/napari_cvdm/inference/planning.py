"""How a plane is sampled within a device's memory: how many samples go through the denoiser together, and the tile
sides of the denoiser and of the λ U-Net where the whole image does not fit (:func:`plan_sampling`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..diffusion.network import CVDMNetwork
from ..diffusion.schedule import LearnedSchedule
from ..diffusion.tiling import balanced_tile
from ..tasks import MIN_SIDE
from .devices import MEMORY_BUDGET_BYTES, memory_budget_bytes, preferred_chunk_pixels

__all__ = ["SamplingPlan", "PASS_BYTES_PER_CHANNEL", "plan_sampling", "device_sampling_plan"]


@dataclass(frozen=True)
class SamplingPlan:
    """How one plane is sampled within the memory budget.

    Attributes
    ----------
    chunk
        Samples denoised together.
    tile
        The denoiser's tile side on the output grid (a multiple of the network's stride), or ``None`` for the
        whole image.
    schedule_tile
        The most the λ U-Net's tiles may span (:func:`~napari_cvdm.diffusion.sampler.schedule_map`), or ``None``
        for the whole image: it runs once per image with activations of its own size, so it may need tiles where
        the denoiser does not, or none where the denoiser does.
    """

    chunk: int
    tile: int | None
    schedule_tile: int | None = None


#: Peak activation memory of one denoiser pass, bytes per output pixel and sample, per channel of the finest
#: level and per input-grid pixel (``space_to_depth²`` output pixels): measured as the growth of the peak RSS of
#: one inference pass at 512²–1024² (sr 32 channels: 405–491 B per output pixel, qpi: 1737–1859, a 16-channel
#: sr net: 177–239, the λ U-Net 778 and, on a twice coarser grid, 242).
PASS_BYTES_PER_CHANNEL = 60


def _unet_pass_bytes(config: Any) -> float:
    """Activation memory of one pass of a U-Net, bytes per output pixel and sample."""
    return PASS_BYTES_PER_CHANNEL * config.base_channels / config.space_to_depth**2


def _bytes_per_pixel(network: CVDMNetwork) -> float:
    """Activation memory of one denoiser pass per output pixel and sample (float32)."""
    return _unet_pass_bytes(network.config.denoiser)


def _shared_bytes_per_pixel(network: CVDMNetwork) -> float:
    """The noise-level embedding's FiLM maps, made once per step for a chunk, bytes per output pixel: two maps
    of each residual block's width at its level's resolution (exact)."""
    unet = getattr(network.denoiser, "unet", None)
    if unet is None:
        return 0.0
    f2 = network.config.denoiser.space_to_depth**2
    return sum(2 * 4 * block.conv1.out_channels / (f2 * 4**level) for block, level in unet.res_block_levels())


def _schedule_bytes_per_pixel(network: CVDMNetwork) -> float:
    """Activation memory of the λ U-Net per output pixel (0 for a fixed schedule)."""
    if not isinstance(network.schedule, LearnedSchedule):
        return 0.0
    return _unet_pass_bytes(network.schedule.lambda_net.config)


def plan_sampling(
    network: CVDMNetwork,
    gain: int,
    shape: tuple[int, int],
    n_samples: int,
    tile_size: int | None = None,
    budget_bytes: int = MEMORY_BUDGET_BYTES,
    chunk_pixels: int | None = None,
) -> SamplingPlan:
    """Choose the chunk of samples and the tile sides of the denoiser and of the λ U-Net, each only when its pass over
    the whole image does not fit the budget.

    Parameters
    ----------
    gain
        Output pixels per input pixel (the task's).
    shape
        ``(H, W)`` of the output grid (padded to the network's stride).
    tile_size
        Tile side asked for, on the **input** grid (``sr`` output tiles are twice that); ``None`` chooses.
    budget_bytes
        Activation memory one chunk may use.
    chunk_pixels
        At most this many output pixels (samples × pixels) per chunk, at least one sample (see
        :func:`~napari_cvdm.inference.devices.preferred_chunk_pixels`); ``None``: as many as the budget allows.
    """
    stride = network.stride
    per_sample, shared = _bytes_per_pixel(network), _shared_bytes_per_pixel(network)
    if tile_size is not None:
        if tile_size < MIN_SIDE:
            raise ValueError(f"tile size {tile_size} is too small; use at least {MIN_SIDE} pixels")
        tile = -(-tile_size * gain // stride) * stride
        tile = None if tile >= max(shape) else tile
        schedule_tile = tile  # tiles asked for bound both networks
    else:
        tile = _fitting_tile(shape, per_sample + shared, budget_bytes, stride)
        schedule_tile = _fitting_tile(shape, _schedule_bytes_per_pixel(network), budget_bytes, stride)
    pixels = shape[0] * shape[1] if tile is None else min(tile, shape[0]) * min(tile, shape[1])
    chunk = min(n_samples, int((budget_bytes / max(pixels, 1) - shared) // max(per_sample, 1)))
    if chunk_pixels is not None:
        chunk = min(chunk, chunk_pixels // pixels)
    return SamplingPlan(int(max(1, chunk)), tile, schedule_tile)


def _fitting_tile(shape: tuple[int, int], bytes_per_pixel: float, budget_bytes: int, stride: int) -> int | None:
    """``None`` when a pass over the whole ``(H, W)`` image fits ``budget_bytes``, else the tile side (a multiple
    of ``stride``, at least 4 strides) whose tiles cover it with the fewest computed pixels."""
    if shape[0] * shape[1] * bytes_per_pixel <= budget_bytes:
        return None
    side = int((budget_bytes / bytes_per_pixel) ** 0.5) // stride * stride
    return balanced_tile(shape, max(side, 4 * stride), stride)


def device_sampling_plan(
    network: CVDMNetwork,
    gain: int,
    shape: tuple[int, int],
    n_samples: int,
    device: torch.device,
    tile_size: int | None = None,
) -> SamplingPlan:
    """:func:`plan_sampling` with ``device``'s memory budget and chunk limit."""
    return plan_sampling(
        network,
        gain,
        shape,
        n_samples,
        tile_size,
        budget_bytes=memory_budget_bytes(device),
        chunk_pixels=preferred_chunk_pixels(device),
    )
