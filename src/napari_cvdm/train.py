"""Training and fine-tuning: AdamW, EMA, clipping, warm-up, checkpoints, validation, DDP.

Reproducibility: the data, times and noise of step ``s`` on rank ``r`` come from
generators seeded with ``(seed, s, r)``, so a run resumed from a checkpoint
continues exactly as the uninterrupted run would (on CPU).

Checkpoints are safetensors files (weights, EMA weights, best EMA weights and
optimizer state as tensors; everything else as JSON metadata), written to a
temporary file and renamed, so an interruption never leaves a half-written
checkpoint and a failed write never destroys the previous one.

Multi-GPU: run under ``torchrun``; each process trains on its own batches and
gradients are averaged with ``all_reduce`` (gloo on CPU, NCCL on CUDA) before
every optimizer step. Rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.dataset import make_batch
from .data.normalize import Normalization
from .diffusion.loss import training_loss
from .diffusion.network import CVDMNetwork, NetworkConfig, build_network
from .metrics import qpi_scores, sr_scores
from .models import _atomic_write

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "Trainer", "DistributedContext", "init_distributed",
           "CHECKPOINT_FORMAT", "new_network", "default_network_config", "split_validation", "starting_network",
           "training_record", "simulated_training_data"]

CHECKPOINT_FORMAT = "napari-cvdm-checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (validated at construction).

    Parameters
    ----------
    steps
        Total optimizer steps of the run (a resumed run continues up to it).
    batch_size
        Pairs per step and process.
    patch_size
        Patch side on the input grid (``sr`` targets are twice that).
    lr, weight_decay
        AdamW learning rate and weight decay.
    warmup_steps
        Linear learning-rate warm-up; afterwards a cosine decay to ``0.1·lr``.
    ema_decay
        Decay of the exponential moving average of the weights used for sampling.
    grad_clip
        Gradient-norm clipping.
    seed
        Seeds the initial weights and every step's data, times and noise.
    checkpoint_every, validate_every, log_every
        Intervals in steps (0 disables validation).
    validation_samples, validation_steps
        Sampling budget of a validation pass.
    bf16
        bf16 autocast of the denoiser on CUDA (ignored elsewhere).
    """

    steps: int
    batch_size: int = 8
    patch_size: int = 48
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 500
    log_every: int = 10
    validation_samples: int = 4
    validation_steps: int = 20
    bf16: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.patch_size < 16:
            raise ValueError("need steps >= 1, batch_size >= 1 and patch_size >= 16")
        if not (self.lr > 0 and 0 <= self.ema_decay < 1 and self.grad_clip > 0):
            raise ValueError("need lr > 0, 0 <= ema_decay < 1 and grad_clip > 0")
        if self.checkpoint_every < 1 or self.validate_every < 0 or self.log_every < 1:
            raise ValueError("intervals must be positive (validate_every may be 0)")


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every step.

    Attributes
    ----------
    step, total
        Steps done and planned.
    loss
        Batch means of the loss terms (``total``, ``noise``, ``beta``, ``prior``, ``curvature``).
    lr
        Learning rate of the step.
    val_psnr
        PSNR (dB) of the latest validation, or ``None`` if none yet.
    seconds
        Wall time since the run (or its resumption) started.
    """

    step: int
    total: int
    loss: dict[str, float]
    lr: float
    val_psnr: float | None
    seconds: float


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.run`."""

    network: CVDMNetwork  # EMA weights of the best validation (or the last EMA weights)
    steps_done: int
    stopped_early: bool
    best_val_psnr: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Trainer:
    """Trains a CVDM network on a pair source.

    Parameters
    ----------
    task
        ``"sr"`` or ``"qpi"``.
    network
        The network to train (fresh or loaded for fine-tuning).
    pairs
        Training pairs (indexable, ``len``).
    normalization
        How pairs are scaled (recorded in the model file).
    config
        Optimisation settings.
    validation
        Held-out ``(input, target)`` pairs for validation PSNR (may be empty).
    device
        Where to train.
    checkpoint
        Checkpoint file (``.safetensors``); ``None`` writes none.
    log
        JSON-lines log file; ``None`` writes none.
    dist
        Distributed context (from :func:`init_distributed`).
    """

    def __init__(self, task: str, network: CVDMNetwork, pairs: Any, normalization: Normalization, config: TrainConfig,
                 validation: Sequence[tuple[np.ndarray, np.ndarray]] = (), device: torch.device | str = "cpu",
                 checkpoint: str | Path | None = None, log: str | Path | None = None,
                 dist: DistributedContext | None = None) -> None:
        if len(pairs) < 1:
            raise ValueError("no training pairs")
        self.task, self.pairs, self.norm, self.cfg = task, pairs, normalization, config
        self.validation = list(validation)
        self.device = torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.log_path = Path(log) if log else None
        self.dist = dist or DistributedContext()
        self.net = network.to(self.device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.best: dict[str, torch.Tensor] | None = None
        self.best_val: float | None = None
        self.last_val: float | None = None
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        if self.dist.world_size > 1:  # every rank starts from rank 0's weights
            import torch.distributed as tdist

            for t in list(self.net.state_dict().values()) + list(self.ema.state_dict().values()):
                tdist.broadcast(t, src=0)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the full training state atomically (rank 0 only)."""
        path = Path(path) if path else self.checkpoint
        if path is None or not self.dist.is_main:
            return None
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for prefix, sd in (("net.", self.net.state_dict()), ("ema.", self.ema.state_dict()),
                           ("best.", self.best or {})):
            for k, v in sd.items():
                tensors[prefix + k] = v.detach().to("cpu").contiguous()
        opt_sd = self.opt.state_dict()
        for idx, state in opt_sd["state"].items():
            for k, v in state.items():
                tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().to("cpu").contiguous()
        meta = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "task": self.task,
            "network": self.net.config.to_dict(),
            "normalization": self.norm.to_dict(),
            "config": asdict(self.cfg),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in opt_sd["param_groups"]],
            "best_val": self.best_val,
            "last_val": self.last_val,
            "history_tail": self.history[-200:],
        }
        _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"checkpoint": json.dumps(meta)}))
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore the full training state written by :meth:`save_checkpoint`."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("checkpoint", "{}"))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a napari-cvdm training checkpoint")
        if NetworkConfig.from_dict(meta["network"]) != self.net.config or meta["task"] != self.task:
            raise ValueError(f"{path}: the checkpoint is for another task or architecture")
        tensors = load_file(str(path), device=str(self.device) if self.device.type != "mps" else "cpu")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.net.load_state_dict(part("net."))
        self.ema.load_state_dict(part("ema."))
        best = part("best.")
        self.best = best or None
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in part("opt.").items():
            idx, key = k.split(".", 1)
            opt_state.setdefault(int(idx), {})[key] = v
        current = self.opt.state_dict()["param_groups"]
        groups = [dict(g, params=cur["params"]) for g, cur in zip(meta["param_groups"], current)]
        self.opt.load_state_dict({"state": opt_state, "param_groups": groups})
        self.step = int(meta["step"])
        self.best_val, self.last_val = meta.get("best_val"), meta.get("last_val")
        self.history = list(meta.get("history_tail", []))

    # ---------------------------------------------------------------- one step
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        seed = _step_seed(self.cfg.seed, step, self.dist.rank)
        rng = np.random.default_rng(seed)
        idx = rng.integers(len(self.pairs), size=self.cfg.batch_size)
        x, y = make_batch([self.pairs[int(i)] for i in idx], self.task, self.norm, self.cfg.patch_size, rng)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return x.to(self.device), y.to(self.device), gen

    def _train_step(self) -> dict[str, float]:
        step = self.step + 1
        lr = _lr_at(step, self.cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, y, gen = self._batch(step)
        use_bf16 = self.cfg.bf16 and self.device.type == "cuda"
        self.net.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            terms = training_loss(self.net, x, y, generator=gen)
        loss = terms.total.float().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} at step {step}; lower the learning rate")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.world_size > 1:
            import torch.distributed as tdist

            for p in self.net.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                tdist.all_reduce(p.grad)
                p.grad /= self.dist.world_size
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.opt.step()
        decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.lerp_(p, 1 - decay)
            for e, b in zip(self.ema.buffers(), self.net.buffers()):
                e.copy_(b)
        self.step = step
        out = terms.means()
        out["lr"] = lr
        return out

    # ---------------------------------------------------------------- validation
    def validate(self) -> float | None:
        """Mean PSNR of the EMA network on the validation pairs (``evaluate`` metrics)."""
        if not self.validation:
            return None
        from .models import CVDMModel
        from .predict import predict_image

        model = CVDMModel(network=self.ema, task=self.task, normalization=self.norm)
        score = sr_scores if self.task == "sr" else qpi_scores
        scores = []
        for i, (inp, tgt) in enumerate(self.validation):  # the prediction path users get, on the EMA weights
            pred = predict_image(model, inp, n_samples=self.cfg.validation_samples, steps=self.cfg.validation_steps,
                                 seed=i, device=str(self.device))
            scores.append(score(pred.mean, tgt).psnr)
        return float(np.mean(scores))

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.log_path is not None and self.dist.is_main:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- the loop
    def run(self, callback: Callable[[TrainProgress], bool | None] | None = None) -> TrainResult:
        """Train until ``config.steps`` or until ``callback`` returns ``False``.

        A checkpoint is written every ``checkpoint_every`` steps and when the run
        ends (also when stopped). Returns the best validation EMA weights (or the
        last EMA weights when there was no validation).
        """
        t0 = time.perf_counter()
        stopped = False
        while self.step < self.cfg.steps:
            losses = self._train_step()
            step = self.step
            if self.cfg.validate_every and step % self.cfg.validate_every == 0 and self.dist.is_main:
                self.last_val = self.validate()
                if self.last_val is not None and (self.best_val is None or self.last_val > self.best_val):
                    self.best_val = self.last_val
                    self.best = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
                self._log({"step": step, "val_psnr": self.last_val, "best_val_psnr": self.best_val})
            if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                self._log({"step": step, **losses, "seconds": round(time.perf_counter() - t0, 3)})
            if step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if callback is not None:
                progress = TrainProgress(step, self.cfg.steps, {k: v for k, v in losses.items() if k != "lr"},
                                         losses["lr"], self.last_val, time.perf_counter() - t0)
                if callback(progress) is False:
                    stopped = True
                    break
        self.save_checkpoint()
        final = build_network(self.net.config)
        final.load_state_dict(self.best if self.best is not None else self.ema.state_dict())
        final.eval()
        return TrainResult(final, self.step, stopped, self.best_val, list(self.history))


def new_network(config: NetworkConfig, seed: int) -> CVDMNetwork:
    """A freshly initialised network, seeded."""
    torch.manual_seed(seed)
    return build_network(config)


def default_network_config(task: str, schedule: str = "learned", base_channels: int | None = None,
                           channel_mults: tuple[int, ...] | None = None, res_blocks: int | None = None,
                           space_to_depth: int | None = None) -> NetworkConfig:
    """Architecture of new models: CPU-sized; ``sr`` runs its U-Net at the input's sampling
    (pixel-unshuffle ×2); ``qpi`` is conditioned on the two intensities and their TIE phase (three channels).
    ``space_to_depth`` overrides the pixel-unshuffle factor (2 doubles the receptive field at the same cost)."""
    from .diffusion.denoiser import UNetConfig
    from .diffusion.schedule import ScheduleConfig

    denoiser = UNetConfig(in_channels=1, out_channels=1, base_channels=base_channels or 32,
                          channel_mults=channel_mults or (1, 2, 2, 4), num_res_blocks=res_blocks or 1,
                          attention_levels=(), embed_channels=16,
                          space_to_depth=space_to_depth or (2 if task == "sr" else 1))
    return NetworkConfig(target_channels=1, cond_channels=1 if task == "sr" else 3, schedule=schedule,
                         denoiser=denoiser, schedule_net=ScheduleConfig(base_channels=16, channel_mults=(1, 2)))


def split_validation(pairs: Any, fraction: float, seed: int) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    """Hold out ``fraction`` of the pairs (at least one when there are two or more) for validation.

    Returns
    -------
    train, validation
        An :class:`~napari_cvdm.data.dataset.ArrayPairs` of the rest, and the held-out pairs.
    """
    from .data.dataset import ArrayPairs

    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    n = len(pairs)
    n_val = 0 if n < 2 or fraction <= 0 else max(1, int(round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    val = [pairs[int(i)] for i in order[:n_val]]
    train_idx = order[n_val:]
    train = ArrayPairs(pairs.task, [pairs[int(i)][0] for i in train_idx], [pairs[int(i)][1] for i in train_idx])
    return train, val


def starting_network(task: str, start: str | Path | None, config: NetworkConfig, normalization: Normalization,
                     seed: int) -> tuple[CVDMNetwork, Normalization, Any]:
    """The network a run starts from: a model to fine-tune (``"sr"``, ``"qpi"`` or a file), or a new one.

    Returns
    -------
    network, normalization, parent
        ``parent`` is the loaded :class:`~napari_cvdm.models.CVDMModel` (``None`` for a new network); a
        fine-tuned model keeps its parent's architecture and normalisation.
    """
    from .models import load_model

    if start is None:
        return new_network(config, seed), normalization, None
    parent = load_model(start, task=task)
    return parent.network, parent.normalization, parent


def training_record(task: str, result: TrainResult, config: TrainConfig, data: dict[str, Any], parent: Any,
                    start: str | Path | None, command: str, world_size: int = 1) -> dict[str, Any]:
    """The ``training`` block of a model file's metadata, with the lineage of fine-tuned models."""
    lineage = []
    if parent is not None:
        lineage = list(parent.metadata.get("training", {}).get("lineage", []))
        lineage.append({"name": parent.name, "path": str(parent.path) if parent.path else None,
                        "training": {k: v for k, v in parent.metadata.get("training", {}).items()
                                     if k != "lineage"}})
    return {"task": task, "steps": result.steps_done, "seed": config.seed, "data": data,
            "config": asdict(config), "from": None if start is None else str(start), "lineage": lineage,
            "best_val_psnr": result.best_val_psnr, "stopped_early": result.stopped_early, "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "world_size": world_size}


def simulated_training_data(task: str, n: int, seed: int, size: int, optics: Any, classes: Sequence[str] = (),
                            images: list[np.ndarray] | None = None) -> tuple[Any, list, dict[str, Any]]:
    """Pairs simulated on the fly with ``optics``, one validation pair per class, and the data record.

    Parameters
    ----------
    task
        ``"sr"`` (``optics`` a :class:`~napari_cvdm.physics.widefield.WidefieldOptics`) or ``"qpi"``
        (a :class:`~napari_cvdm.data.simulate.QPIOptics`).
    n, seed, size
        Number of training pairs, their seed and the input side in pixels.
    classes, images
        Structure classes (sr) or phase sources (qpi); images to draw phase from (qpi).
    """
    from .data.dataset import SimulatedPairs
    from .evaluate import VALIDATION_SEED

    kw: dict[str, Any] = dict(task=task, size=size, images=images, classes=list(classes))
    kw["sr_optics" if task == "sr" else "qpi_optics"] = optics
    train = SimulatedPairs(n=n, seed=seed, **kw)
    val_source = SimulatedPairs(n=len(train.classes), seed=VALIDATION_SEED + 1, **kw)
    record = {"simulate": n, "size": size, "classes": list(train.classes), "optics": optics.to_dict()}
    return train, [val_source[i] for i in range(len(val_source))], record
