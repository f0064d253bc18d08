"""Device, precision, memory layout, compilation and memory budget: where and how sampling runs.

The one policy :mod:`napari_cvdm.inference.predict`, ``bench`` and training share: ``auto`` is CUDA, then MPS, then the
CPU; bf16 only where the hardware computes it natively; channels-last where convolutions are fastest in it.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..diffusion.network import CVDMNetwork

__all__ = [
    "resolve_device",
    "available_devices",
    "autocast_dtype",
    "sampling_autocast",
    "cpu_has_native_bf16",
    "sampling_memory_format",
    "prepare_network",
    "preferred_chunk_pixels",
    "compile_network",
    "memory_budget_bytes",
    "cpu_features",
    "FORCE_FP32_ENV",
    "MEMORY_BUDGET_BYTES",
]

MEMORY_BUDGET_BYTES = 2 * 1024**3
#: Output pixels denoised together on a CPU (samples × pixels per chunk): larger batches fall out of the caches.
#: On the 2-core machine of docs/performance.md one 1024² sample costs 0.45 s a pass alone and 0.67 s two at a time;
#: 256² samples are cheapest four or eight at a time.
_CPU_CHUNK_PIXELS = 2**18


def available_devices() -> list[str]:
    """Devices present on this machine, best first (always ends with ``"cpu"``); with several GPUs each also by
    number (``cuda:0``, ``cuda:1``, …)."""
    out = []
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        out += ["cuda"] + ([f"cuda:{i}" for i in range(count)] if count > 1 else [])  # a second GPU by number
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        return torch.device(available_devices()[0])
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N (the N-th GPU) or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA GPU is available to torch on this machine")
    if name == "mps" and "mps" not in available_devices():
        raise ValueError("device 'mps' was asked for, but Apple MPS is not available on this machine")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


#: Set to 1 to sample in fp32 everywhere (to compare machines, or to measure fp32 figures on a CPU with bf16).
FORCE_FP32_ENV = "NAPARI_CVDM_FP32"


def cpu_features() -> str:
    """The CPU's vector instructions as torch uses them, e.g. ``"AVX2, no AVX512-BF16, no AMX"``."""
    native = {
        name: bool(getattr(torch.cpu, f"_is_{key}_supported", lambda: False)())
        for name, key in (("AVX512-BF16", "avx512_bf16"), ("AMX", "amx_tile"))
    }
    return ", ".join([torch.backends.cpu.get_cpu_capability(), *((k if v else f"no {k}") for k, v in native.items())])


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Reduced precision for the denoiser when sampling on ``device``: bf16 on CUDA and on CPUs with native
    bf16, none elsewhere (MPS lacks bf16) or when ``NAPARI_CVDM_FP32=1``. On the 2-core AVX512-BF16 machine of
    docs/performance.md bf16 is 1.65× faster at an unchanged held-out PSNR. The schedule always runs in fp32
    (:class:`~napari_cvdm.diffusion.schedule.LearnedSchedule` disables autocast for itself)."""
    if os.environ.get(FORCE_FP32_ENV, "") not in ("", "0"):
        return None
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def sampling_autocast(device: torch.device, dtype: torch.dtype | None):
    """A context that runs convolutions and matrix products in ``dtype`` (or does nothing for ``None``)."""
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
        return max(MEMORY_BUDGET_BYTES, free // 2)
    return MEMORY_BUDGET_BYTES


def preferred_chunk_pixels(device: torch.device) -> int | None:
    """Most output pixels (samples × pixels) worth denoising in one batch on ``device``: a cache-sized limit on
    CPUs, none on GPUs (which want the biggest batch the memory budget allows)."""
    return _CPU_CHUNK_PIXELS if device.type == "cpu" else None
