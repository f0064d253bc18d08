"""The one prediction path shared by the Python API, the command line and the widgets.

Input checks, normalisation, padding to the network's stride, devices, stacks
plane by plane, and the conversion of samples back to physical units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data.normalize import qpi_base, qpi_condition, sr_affine, sr_condition
from .diffusion.network import CVDMNetwork
from .diffusion.sampler import ProgressCallback, SamplingProgress, sample, schedule_map
from .diffusion.schedule import LearnedSchedule
from .models import CVDMModel, Prediction

__all__ = ["resolve_device", "available_devices", "predict_image", "check_input", "MIN_SIDE", "SamplingPlan",
           "plan_sampling", "device_sampling_plan", "autocast_dtype", "sampling_autocast", "cpu_has_native_bf16",
           "sampling_memory_format", "prepare_network", "preferred_chunk_pixels", "compile_network",
           "memory_budget_bytes"]

MIN_SIDE = 16
_MEMORY_BUDGET_BYTES = 2 * 1024**3
#: Output pixels denoised together on a CPU (samples × pixels per chunk): larger batches fall out of the caches.
#: On the 2-core machine of docs/performance.md one 1024² sample costs 0.45 s a pass alone and 0.67 s two at a time;
#: 256² samples are cheapest four or eight at a time.
_CPU_CHUNK_PIXELS = 2**18


def available_devices() -> list[str]:
    """Devices present on this machine, best first (always ends with ``"cpu"``)."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        return torch.device(available_devices()[0])
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA GPU is available to torch on this machine")
    if name == "mps" and "mps" not in available_devices():
        raise ValueError("device 'mps' was asked for, but Apple MPS is not available on this machine")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Reduced precision for the denoiser when sampling on ``device``: bf16 on CUDA and on CPUs with native
    bf16, none elsewhere (MPS lacks bf16). On the 2-core AVX512-BF16 machine of docs/performance.md bf16 is
    1.65× faster at an unchanged held-out PSNR. The schedule always runs in fp32
    (:class:`~napari_cvdm.diffusion.schedule.LearnedSchedule` disables autocast for itself)."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def sampling_autocast(device: torch.device, dtype: torch.dtype | None):
    """A context that runs convolutions and matrix products in ``dtype`` (or does nothing for ``None``)."""
    import contextlib

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def sampling_memory_format(device: torch.device) -> torch.memory_format:
    """Memory layout of the networks when sampling: channels-last (NHWC) where convolutions are fastest in it
    (oneDNN on CPUs: 1.3–1.5× per denoiser pass on the machine of docs/performance.md; tensor cores on CUDA),
    the default layout on MPS."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def prepare_network(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``net`` to ``device`` in its sampling layout (:func:`sampling_memory_format`) and eval mode, in place.

    Model files are unaffected: saving writes contiguous tensors whatever the layout.
    """
    return net.to(device=device, memory_format=sampling_memory_format(device)).eval()


def compile_network(net: CVDMNetwork, **options) -> CVDMNetwork:
    """Compile the denoiser with ``torch.compile`` (in place: parameter names and model files are unchanged).

    Opt-in (``--compile`` on the command line): the first pass of every new image size compiles for tens of
    seconds, and only long runs on a GPU gain. On the 2-core CPU of docs/performance.md a compiled sr pass was
    *slower* (0.55 s against 0.46 s at 1024²) after a 30–40 s compile, so it is never chosen automatically.
    On a CPU it needs a C++ compiler.

    Parameters
    ----------
    net
        The network to compile.
    **options
        Passed to :func:`torch.compile` (``mode``, ``backend``, …).

    Returns
    -------
    CVDMNetwork
        ``net`` itself.
    """
    net.denoiser.compile(**options)
    return net


def memory_budget_bytes(device: torch.device) -> int:
    """Activation memory one chunk of samples may use on ``device``: half of the free memory of a CUDA GPU
    (a GPU wants big batches), 2 GiB elsewhere (CPU and MPS share the machine's memory with everything else)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(_MEMORY_BUDGET_BYTES, free // 2)
    return _MEMORY_BUDGET_BYTES


def preferred_chunk_pixels(device: torch.device) -> int | None:
    """Most output pixels (samples × pixels) worth denoising in one batch on ``device``: a cache-sized limit on
    CPUs, none on GPUs (which want the biggest batch the memory budget allows)."""
    return _CPU_CHUNK_PIXELS if device.type == "cpu" else None


def check_input(image: np.ndarray, task: str) -> np.ndarray:
    """Validate an input array and return it as float64 planes.

    Returns
    -------
    numpy.ndarray
        ``sr``: ``(P, H, W)``; ``qpi``: ``(P, 2, H, W)`` — ``P`` planes.

    Raises
    ------
    ValueError
        Wrong number of dimensions or planes, too small, or non-finite values.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "iufb":
        raise ValueError(f"the image has data type {arr.dtype}; a numeric image is needed")
    arr = arr.astype(np.float64)
    if task == "sr":
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim != 3:
            raise ValueError(f"sr expects one plane (H, W) or a stack (Z or T, H, W); got shape {arr.shape}. "
                             "RGB or multi-channel images: pick one channel first")
        if arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
            raise ValueError(f"shape {arr.shape} looks like an RGB image; sr expects a single-channel widefield image")
    elif task == "qpi":
        if arr.ndim == 3 and arr.shape[0] == 2:
            arr = arr[None]
        elif not (arr.ndim == 4 and arr.shape[1] == 2):
            raise ValueError(f"qpi expects two planes (2, H, W) ordered (-dz, +dz), or (T, 2, H, W); got shape "
                             f"{arr.shape}")
    else:
        raise ValueError(f"unknown task {task!r}")
    if min(arr.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"the image is {arr.shape[-2]}×{arr.shape[-1]} pixels; at least {MIN_SIDE}×{MIN_SIDE} "
                         "is needed")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"the image contains {bad} NaN or infinite values; replace them (e.g. with the "
                         "background level) before reconstruction")
    return arr


def _pad_to(t: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = t.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    return t, (h, w)


@dataclass(frozen=True)
class SamplingPlan:
    """How one plane is sampled within the memory budget.

    Attributes
    ----------
    chunk
        Samples denoised together.
    tile
        Tile side on the output grid (a multiple of the network's stride), or ``None`` for the whole image.
    """

    chunk: int
    tile: int | None


def _bytes_per_pixel(model: CVDMModel) -> int:
    """Rough activation memory of one denoiser pass per output pixel and sample (float32)."""
    return model.network.config.denoiser.base_channels * 4 * 16


def plan_sampling(model: CVDMModel, shape: tuple[int, int], n_samples: int, tile_size: int | None = None,
                  budget_bytes: int = _MEMORY_BUDGET_BYTES, chunk_pixels: int | None = None) -> SamplingPlan:
    """Choose the chunk of samples and, when the image does not fit the budget, the tile side.

    Parameters
    ----------
    shape
        ``(H, W)`` of the output grid (padded to the network's stride).
    tile_size
        Tile side asked for, on the **input** grid (``sr`` output tiles are twice that); ``None`` chooses.
    budget_bytes
        Activation memory one chunk may use.
    chunk_pixels
        At most this many output pixels (samples × pixels) per chunk, at least one sample (see
        :func:`preferred_chunk_pixels`); ``None``: as many as the budget allows.
    """
    stride = model.network.stride
    factor = 2 if model.task == "sr" else 1
    per_pixel = _bytes_per_pixel(model)
    if tile_size is not None:
        if tile_size < MIN_SIDE:
            raise ValueError(f"tile size {tile_size} is too small; use at least {MIN_SIDE} pixels")
        tile = -(-tile_size * factor // stride) * stride
        if tile >= max(shape):
            tile = None
    elif shape[0] * shape[1] * per_pixel <= budget_bytes:
        tile = None
    else:
        side = int((budget_bytes / per_pixel) ** 0.5) // stride * stride
        tile = max(side, 4 * stride)
    pixels = shape[0] * shape[1] if tile is None else min(tile, shape[0]) * min(tile, shape[1])
    chunk = min(n_samples, budget_bytes // max(pixels * per_pixel, 1))
    if chunk_pixels is not None:
        chunk = min(chunk, chunk_pixels // pixels)
    return SamplingPlan(int(max(1, chunk)), tile)


def device_sampling_plan(model: CVDMModel, shape: tuple[int, int], n_samples: int, device: torch.device,
                         tile_size: int | None = None) -> SamplingPlan:
    """:func:`plan_sampling` with ``device``'s memory budget (:func:`memory_budget_bytes`) and chunk limit
    (:func:`preferred_chunk_pixels`)."""
    return plan_sampling(model, shape, n_samples, tile_size, budget_bytes=memory_budget_bytes(device),
                         chunk_pixels=preferred_chunk_pixels(device))


def _sample_plane(model: CVDMModel, cond: torch.Tensor, n_samples: int, steps: int, seed: int,
                  device: torch.device, callback: ProgressCallback | None,
                  tile_size: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    net = model.network
    padded, (h, w) = _pad_to(cond, net.stride)
    plan = device_sampling_plan(model, tuple(padded.shape[-2:]), n_samples, device, tile_size)
    lam_map = schedule_map(net, padded, plan.tile)  # once per plane: used by the sampler and returned
    gen = torch.Generator(device=device).manual_seed(seed)
    with sampling_autocast(device, autocast_dtype(device)):
        out = sample(net, padded, n_samples, steps, gen, chunk_size=plan.chunk, callback=callback, tile=plan.tile,
                     lam=lam_map)
    lam = lam_map[0, 0, :h, :w] if isinstance(net.schedule, LearnedSchedule) else None
    return out[..., :h, :w], lam


def predict_image(model: CVDMModel, image: np.ndarray, n_samples: int = 8, steps: int | None = None, seed: int = 0,
                  device: str = "auto", tile_size: int | None = None,
                  callback: ProgressCallback | None = None) -> Prediction:
    """See :meth:`napari_cvdm.models.CVDMModel.predict`."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    steps = model.default_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    single = np.asarray(image).ndim == (2 if model.task == "sr" else 3)
    planes = check_input(image, model.task)
    dev = resolve_device(device)
    prepare_network(model.network, dev)
    n_planes = len(planes)
    means, stds, all_samples, lams = [], [], [], []
    for p, plane in enumerate(planes):
        plane_cb = None
        if callback is not None:
            def plane_cb(prog: SamplingProgress, p: int = p) -> bool | None:
                return callback(SamplingProgress(p * prog.total + prog.done, n_planes * prog.total))
        if model.task == "sr":
            offset, scale = sr_affine(plane, model.normalization)
            if scale == 1.0 and float(np.ptp(plane)) < 1e-6:
                warnings.warn("the image is flat (constant): the reconstruction carries no structure", stacklevel=2)
            xn = torch.from_numpy((plane - offset) / scale).float()[None, None].to(dev)
            cond = sr_condition(xn)
            s, lam = _sample_plane(model, cond, n_samples, steps, seed + p, dev, plane_cb, tile_size)
            values = ((s + cond) * scale + offset)[:, 0]
        else:
            cond = qpi_condition(torch.from_numpy(plane).float()[None].to(dev), model.normalization)
            s, lam = _sample_plane(model, cond, n_samples, steps, seed + p, dev, plane_cb, tile_size)
            values = (s + qpi_base(cond, model.normalization))[:, 0] * model.normalization.phase_scale
            values = values - values.mean(dim=(-2, -1), keepdim=True)
        v = values.double()
        means.append(v.mean(0))
        stds.append(v.std(0, unbiased=True) if n_samples > 1 else torch.zeros_like(v[0]))
        all_samples.append(v)
        lams.append(lam)

    def stack(items: list[torch.Tensor]) -> np.ndarray:
        arr = torch.stack(items).cpu().numpy().astype(np.float32)
        return arr[0] if single else arr

    samples = torch.stack(all_samples, 1).cpu().numpy().astype(np.float32)  # (N, P, ...)
    return Prediction(
        mean=stack(means),
        std=stack(stds),
        samples=samples[:, 0] if single else samples,
        schedule=None if lams[0] is None else stack([lam.float() for lam in lams]),
    )
