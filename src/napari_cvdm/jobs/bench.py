"""Speed figures of the sampling path: where the time goes, FLOP/s against the machine's own peak, memory.

Everything is measured in one process so that ratios are comparable on a noisy machine:

* the machine's dense peak in the sampling precision: square matrix products (``torch.mm``) timed for about a
  second;
* the schedule (λ(x) and τ(t), once per image), one whole denoiser pass, and its two parts — the noise-level
  embedding (FiLM maps, once per step for all samples) and the rest (per sample) — each the median of repeats;
* a whole ``sample`` call (N samples × S steps), timed end to end;
* FLOPs of the embedding and of the rest counted by :class:`torch.utils.flop_counter.FlopCounterMode`
  (convolutions and matrix products; element-wise work is not counted).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..diffusion.network import CVDMNetwork, NetworkConfig, build_network
from ..diffusion.sampler import sample, time_grid
from ..inference.devices import (
    autocast_dtype,
    compile_network,
    preferred_chunk_pixels,
    prepare_network,
    resolve_device,
    sampling_autocast,
)
from ..inference.models import CVDMModel, load_model
from ..inference.planning import device_sampling_plan

__all__ = [
    "BenchResult",
    "matmul_peak_gflops",
    "bench_network",
    "sr3_preset_network",
    "model_condition",
    "random_condition",
    "format_bench",
    "bench_model",
    "BenchRequest",
    "run_bench",
    "bench_sr3_preset",
]


@dataclass(frozen=True)
class BenchResult:
    """Figures of one benchmark (seconds, GFLOP/s, MiB)."""

    device: str
    precision: str
    threads: int
    machine: str
    output_shape: tuple[int, int]
    samples: int
    steps: int
    chunk: int
    parameters_m: float
    schedule_s: float
    denoiser_pass_s: float
    embedding_s: float
    rest_of_pass_s: float
    sample_total_s: float
    per_sample_step_s: float
    amortization: float
    sample_steps_per_s: float
    denoiser_gflop: float
    achieved_gflops: float
    peak_gflops: float
    peak_memory_mib: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak_gflops(
    device: torch.device, size: int = 2048, seconds: float = 1.0, dtype: torch.dtype = torch.float32
) -> float:
    """Dense matrix-product rate of this machine in ``dtype`` (GFLOP/s), the best of repeated ``size``² products."""
    a = torch.randn((size, size), device=device).to(dtype)
    b = torch.randn((size, size), device=device).to(dtype)
    torch.mm(a, b)  # warm-up
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        best = max(best, 2 * size**3 / _median_time(lambda: torch.mm(a, b), device, 1) / 1e9)
    return best


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def bench_network(
    net: CVDMNetwork,
    cond: torch.Tensor,
    samples: int,
    steps: int,
    repeats: int = 3,
    chunk_size: int | None = None,
    autocast: torch.dtype | None = None,
) -> BenchResult:
    """Time the schedule, one denoiser pass of a full chunk, and a whole sampling run.

    Parameters
    ----------
    net
        The network, already on its device, in eval mode.
    cond
        Condition ``(1, C, H, W)`` on the output grid (multiples of ``net.stride``).
    samples, steps
        The sampling run to time.
    chunk_size
        Samples per denoiser batch (all of them by default).
    autocast
        Reduced precision of the denoiser (as :func:`napari_cvdm.inference.predict.autocast_dtype` chooses), or
        ``None``.
    """
    device = cond.device
    chunk = samples if chunk_size is None else min(chunk_size, samples)
    with sampling_autocast(device, autocast):
        parts = _denoiser_parts(net, cond, chunk, steps, repeats)
        gen = torch.Generator(device=device).manual_seed(0)
        total_s = _median_time(lambda: sample(net, cond, samples, steps, gen, chunk_size=chunk), device, 1)
    flops_per_step = parts["embedding_flops"] + samples * parts["rest_flops"]  # the sampler's work in one step
    per_sample_step = total_s / (samples * steps)
    peak = matmul_peak_gflops(device, size=8192 if device.type == "cuda" else 2048, dtype=autocast or torch.float32)
    return BenchResult(
        device=str(device),
        precision="fp32" if autocast is None else str(autocast).replace("torch.", ""),
        threads=torch.get_num_threads(),
        machine=_machine(device, autocast),
        output_shape=tuple(cond.shape[-2:]),
        samples=samples,
        steps=steps,
        chunk=chunk,
        parameters_m=sum(p.numel() for p in net.parameters()) / 1e6,
        schedule_s=parts["schedule_s"],
        denoiser_pass_s=parts["pass_s"],
        embedding_s=parts["embedding_s"],
        rest_of_pass_s=parts["rest_s"],
        sample_total_s=total_s,
        per_sample_step_s=per_sample_step,
        amortization=per_sample_step / (parts["pass_s"] / chunk),
        sample_steps_per_s=samples * steps / total_s,
        denoiser_gflop=flops_per_step / samples / 1e9,
        achieved_gflops=flops_per_step * steps / total_s / 1e9,
        peak_gflops=peak,
        peak_memory_mib=_peak_memory_mib(device),
    )


def _machine(device: torch.device, autocast: torch.dtype | None) -> str:
    """What decides the speed here: the CPU's instructions (or the GPU) and why this precision was chosen."""
    import os

    from ..inference.devices import FORCE_FP32_ENV, cpu_features

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU with {cpu_features()}"
    why = (
        f"fp32 forced by {FORCE_FP32_ENV}=1"
        if os.environ.get(FORCE_FP32_ENV, "") not in ("", "0")
        else "bf16: native on this device"
        if autocast is not None
        else f"fp32 (bf16 would be emulated here; {FORCE_FP32_ENV}=1 forces fp32 elsewhere)"
    )
    return f"{where}; {why}"


def _denoiser_parts(net: CVDMNetwork, cond: torch.Tensor, chunk: int, steps: int, repeats: int) -> dict[str, float]:
    """Median times (s) of the schedule, a whole denoiser pass of ``chunk`` samples, its noise-level embedding and
    the rest; FLOPs of the embedding and of the rest for one sample (under the caller's autocast)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = cond.device
    z = torch.randn((chunk, net.config.target_channels, *cond.shape[-2:]), device=device)
    xb = cond.expand(chunk, -1, -1, -1)
    gamma = torch.full((chunk, 1, *cond.shape[-2:]), 0.5, device=device)
    t_grid = time_grid(steps, device, torch.float32)
    den = net.denoiser
    out: dict[str, float] = {}
    with torch.inference_mode():
        films = den.noise_embedding(gamma[:1])
        den(z, xb, gamma)  # warm-up (and compilation, for a compiled denoiser) of both call forms
        den(z, xb, gamma, films=films)
        out["schedule_s"] = _median_time(lambda: (net.schedule.lam(cond), net.schedule.tau(t_grid)), device, repeats)
        out["pass_s"] = _median_time(lambda: den(z, xb, gamma), device, repeats)
        out["embedding_s"] = _median_time(lambda: den.noise_embedding(gamma[:1]), device, repeats)
        out["rest_s"] = _median_time(lambda: den(z, xb, gamma, films=films), device, repeats)
        for key, work in (
            ("embedding_flops", lambda: den.noise_embedding(gamma[:1])),
            ("rest_flops", lambda: den(z[:1], xb[:1], gamma[:1], films=films)),
        ):
            with FlopCounterMode(display=False) as counter:
                work()
            out[key] = counter.get_total_flops()
    return out


def sr3_preset_network(device: torch.device) -> CVDMNetwork:
    """The paper's SR3-sized denoiser (64 channels, (1, 2, 4, 8, 8), 3 blocks, attention at the coarsest level)
    with a learned schedule, randomly initialised: for setting the cost per step beside the reference."""
    from ..diffusion.denoiser import sr3_config
    from ..diffusion.schedule import ScheduleConfig

    torch.manual_seed(0)
    config = NetworkConfig(target_channels=1, cond_channels=1, denoiser=sr3_config(), schedule_net=ScheduleConfig())
    return prepare_network(build_network(config), device)


def model_condition(model: CVDMModel, size: int, device: torch.device) -> torch.Tensor:
    """A random condition for ``model`` of an ``size``² input, on the output grid."""
    factor = model.task.gain
    channels = model.network.config.cond_channels
    side = -(-size * factor // model.network.stride) * model.network.stride
    return random_condition((1, channels, side, side), device)


def random_condition(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform random tensor of ``shape`` on ``device``, the same every run (seed 0)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)


def format_bench(name: str, r: BenchResult) -> str:
    """The figures as readable lines."""
    d = asdict(r)
    return "\n".join(
        [
            f"{name}: {d['parameters_m']:.1f} M parameters, output {r.output_shape[0]}×{r.output_shape[1]}, "
            f"{r.samples} samples × {r.steps} steps, device {r.device} ({r.precision} denoiser), {r.threads} threads",
            f"  machine                   {r.machine}",
            f"  whole sampling run        {r.sample_total_s:8.2f} s   ({r.sample_steps_per_s:.2f} sample·steps/s)",
            f"  schedule λ(x), τ(t), once {r.schedule_s:8.3f} s   "
            f"({100 * r.schedule_s / r.sample_total_s:.1f} % of the run)",
            f"  one denoiser pass         {r.denoiser_pass_s:8.3f} s   for {r.chunk} sample(s) at once: noise-level "
            f"embedding {r.embedding_s:.3f} s (once per step for all samples) + the rest {r.rest_of_pass_s:.3f} s",
            f"  cost per sample·step      {r.per_sample_step_s:8.3f} s   = {r.amortization:.2f} × one whole denoiser "
            f"pass per sample",
            f"  denoiser work             {r.denoiser_gflop:8.1f} GFLOP per sample·step; "
            f"achieved {r.achieved_gflops:.1f} GFLOP/s = {100 * r.achieved_gflops / r.peak_gflops:.0f} % "
            f"of the measured {r.precision} matmul peak ({r.peak_gflops:.1f} GFLOP/s)",
            f"  peak memory               {r.peak_memory_mib:8.0f} MiB",
        ]
    )


@dataclass(frozen=True)
class BenchRequest:
    """Speed figures: where the time of a sampling run goes, GFLOP/s against this machine's own peak, memory.

    Parameters
    ----------
    model
        sr, qpi or a model file.
    preset
        sr3: time the paper-sized network (random weights) instead.
    size
        Input side in pixels.
    compile
        Time the denoiser compiled with torch.compile.
    """

    model: str = field(default="sr", metadata={"cli": "--model"})
    preset: str | None = field(default=None, metadata={"cli": "--preset", "choices": ("sr3",)})
    size: int = field(default=256, metadata={"cli": "--size"})
    compile: bool = field(default=False, metadata={"cli": "--compile"})


def run_bench(request: BenchRequest, options: Any) -> tuple[str, BenchResult]:
    """Time the request with ``options``' samples, steps (SR3 preset: 2 by default) and device."""
    if request.preset == "sr3":
        return bench_sr3_preset(request.size, options.n_samples, options.steps or 2, options.device, request.compile)
    return bench_model(request.model, request.size, options.n_samples, options.steps, options.device, request.compile)


def _bench(
    name: str,
    net: CVDMNetwork,
    cond: torch.Tensor,
    samples: int,
    steps: int,
    chunk: int | None,
    device: torch.device,
    compile: bool,
) -> tuple[str, BenchResult]:
    if compile:
        compile_network(net)
        name += ", torch.compile"
    return name, bench_network(net, cond, samples, steps, chunk_size=chunk, autocast=autocast_dtype(device))


def bench_model(
    model: str, size: int = 256, samples: int = 8, steps: int | None = None, device: str = "auto", compile: bool = False
) -> tuple[str, BenchResult]:
    """Benchmark a model (``sr``, ``qpi`` or a file) on a random ``size``² input as :func:`predict` would run it
    (its chunk plan and precision). Returns a display name and the figures."""
    dev = resolve_device(device)
    m = load_model(model)
    net, cond = prepare_network(m.network, dev), model_condition(m, size, dev)
    chunk = device_sampling_plan(m.network, m.task.gain, tuple(cond.shape[-2:]), samples, dev).chunk
    return _bench(f"{m.name} ({size}² input)", net, cond, samples, steps or m.default_steps, chunk, dev, compile)


def bench_sr3_preset(
    size: int = 256, samples: int = 1, steps: int = 2, device: str = "auto", compile: bool = False
) -> tuple[str, BenchResult]:
    """Benchmark the paper's SR3-sized network (random weights) on a ``size``² output."""
    dev = resolve_device(device)
    net = sr3_preset_network(dev)
    side = -(-size // net.stride) * net.stride
    limit = preferred_chunk_pixels(dev)
    chunk = None if limit is None else max(1, limit // side**2)
    return _bench(
        f"SR3-sized preset ({size}² → {side}²)",
        net,
        random_condition((1, 1, side, side), dev),
        samples,
        steps,
        chunk,
        dev,
        compile,
    )
