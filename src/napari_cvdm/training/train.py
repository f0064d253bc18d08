"""The training loop: AdamW, EMA, clipping, warm-up and cosine decay, validation, checkpoints, logging.

The :class:`Trainer` knows no task: it draws batches from a *batch source* (``rng → (x, y)``) and scores the
EMA network with a *validator* (``network → PSNR``). :mod:`napari_cvdm.training.job` builds both for a task's pairs;
the toy problem builds its own. Checkpoints are in :mod:`napari_cvdm.training.checkpoint`, several processes in
:mod:`napari_cvdm.training.distributed`.

Reproducibility: the data, times and noise of step ``s`` on rank ``r`` come from generators seeded with
``(seed, s, r)``, so a run resumed from a checkpoint continues exactly as the uninterrupted run would (on CPU).
Several processes (``torchrun``): each trains on its own batches, gradients are averaged before every
optimizer step, rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..diffusion.loss import training_loss
from ..diffusion.network import CVDMNetwork, NetworkConfig, build_network
from .checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from .distributed import DistributedContext, average_gradients, broadcast_from_main

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "Trainer", "BatchSource", "Validator", "new_network", "lr_at"]

#: Draws one training batch: ``rng → (x, y)``, condition and target tensors ``(B, C, h, w)``.
BatchSource = Callable[[np.random.Generator], "tuple[torch.Tensor, torch.Tensor]"]
#: Scores a network on held-out data: mean PSNR in dB (or ``None`` when there is nothing to score).
Validator = Callable[[CVDMNetwork], "float | None"]


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
        AdamW learning rate (fine-tuning a trained model with --from: 2e-4 unless given) and weight decay.
    warmup_steps
        Linear learning-rate warm-up; afterwards a cosine decay to ``0.1·lr``.
    lr_decay_steps
        Steps over which the learning rate decays (default: ``steps``; longer keeps it near its peak, shorter
        holds it at ``0.1·lr`` afterwards, e.g. to continue a finished run).
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

    steps: int = field(metadata={"cli": "--steps"})
    batch_size: int = field(default=8, metadata={"cli": "--batch-size"})
    patch_size: int = field(default=48, metadata={"cli": "--patch-size"})
    lr: float = field(default=1e-3, metadata={"cli": "--lr"})
    weight_decay: float = 0.0
    warmup_steps: int = field(default=100, metadata={"cli": "--warmup", "parse": int})
    lr_decay_steps: int | None = field(default=None, metadata={"cli": "--lr-decay-steps", "parse": int})
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = field(default=0, metadata={"cli": "--seed", "parse": int})
    checkpoint_every: int = field(default=200, metadata={"cli": "--checkpoint-every"})
    validate_every: int = field(default=500, metadata={"cli": "--validate-every", "parse": int})
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


#: The learning rate of a run that starts from a trained model, unless one is given: 1e-4 to 3e-4 keep what the
#: model knows while it adapts (docs/user-guide.md); a run from scratch takes :class:`TrainConfig`'s default.
FINE_TUNE_LR = 2e-4


def training_config(fine_tuning: bool, values: dict[str, Any]) -> TrainConfig:
    """The settings of a run: ``values`` (field → value, those the user gave), the learning rate
    :data:`FINE_TUNE_LR` when ``fine_tuning`` and none was given."""
    return TrainConfig(**{**({"lr": FINE_TUNE_LR} if fine_tuning else {}), **values})


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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (from 1): linear warm-up, then a cosine decay to ``0.1·lr`` over
    ``lr_decay_steps`` (default ``steps``), held there afterwards."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, (cfg.lr_decay_steps or cfg.steps) - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Trainer:
    """Trains a CVDM network on batches from a batch source.

    Parameters
    ----------
    network
        The network to train (fresh or loaded for fine-tuning).
    batches
        Draws one batch from a generator (see :data:`BatchSource`).
    config
        Optimisation settings.
    device
        Where to train.
    validator
        Scores the EMA network on held-out data (``None``: no validation).
    checkpoint
        Checkpoint file (``.safetensors``); ``None`` writes none.
    log
        JSON-lines log file; ``None`` writes none.
    dist
        Distributed context (:func:`napari_cvdm.training.distributed.init_distributed`).
    identity
        Recorded in checkpoints and checked on resume (e.g. the task and the normalisation).
    """

    def __init__(
        self,
        network: CVDMNetwork,
        batches: BatchSource,
        config: TrainConfig,
        device: torch.device | str = "cpu",
        validator: Validator | None = None,
        checkpoint: str | Path | None = None,
        log: str | Path | None = None,
        dist: DistributedContext | None = None,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.batches, self.cfg, self.validator = batches, config, validator
        self.device = torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.log_path = Path(log) if log else None
        self.dist = dist or DistributedContext()
        self.identity = dict(identity or {})
        self.net = network.to(self.device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.best: dict[str, torch.Tensor] | None = None
        self.best_val: float | None = None
        self.last_val: float | None = None
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        broadcast_from_main([*self.net.state_dict().values(), *self.ema.state_dict().values()], self.dist)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the full training state atomically (rank 0 only)."""
        path = Path(path) if path else self.checkpoint
        if path is None or not self.dist.is_main:
            return None
        meta = {
            **self.identity,
            "step": self.step,
            "network": self.net.config.to_dict(),
            "config": asdict(self.cfg),
            "best_val": self.best_val,
            "last_val": self.last_val,
            "history_tail": self.history[-200:],
        }
        return write_checkpoint(
            path, Checkpoint(self.net.state_dict(), self.ema.state_dict(), self.best or {}, self.opt.state_dict(), meta)
        )

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Restore the full training state written by :meth:`save_checkpoint`; return the settings of the run
        that wrote it (:class:`TrainConfig` as a dict, empty if the checkpoint lacks them).

        Raises
        ------
        ValueError
            Not a checkpoint, or one of another task, normalisation or architecture.
        """
        ids = [g["params"] for g in self.opt.state_dict()["param_groups"]]
        ckpt = read_checkpoint(path, self.device, ids)
        same = all(ckpt.meta.get(k) == v for k, v in self.identity.items())
        if NetworkConfig.from_dict(ckpt.meta["network"]) != self.net.config or not same:
            raise ValueError(f"{path}: the checkpoint is for another task or architecture")
        self.net.load_state_dict(ckpt.net)
        self.ema.load_state_dict(ckpt.ema)
        self.best = ckpt.best or None
        self.opt.load_state_dict(ckpt.optimizer)
        self.step = int(ckpt.meta["step"])
        self.best_val, self.last_val = ckpt.meta.get("best_val"), ckpt.meta.get("last_val")
        self.history = list(ckpt.meta.get("history_tail", []))
        return dict(ckpt.meta.get("config") or {})

    # ---------------------------------------------------------------- one step
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        seed = _step_seed(self.cfg.seed, step, self.dist.rank)
        x, y = self.batches(np.random.default_rng(seed))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return x.to(self.device), y.to(self.device), gen

    def _train_step(self) -> dict[str, float]:
        step = self.step + 1
        lr = lr_at(step, self.cfg)
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
        average_gradients(self.net.parameters(), self.dist)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self._update_ema(step)
        self.step = step
        out = terms.means()
        out["lr"] = lr
        return out

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), self.net.buffers()):
            e.copy_(b)

    # ---------------------------------------------------------------- validation and logging
    def validate(self) -> float | None:
        """Score the EMA network (``None`` without a validator); keep its weights when they are the best."""
        if self.validator is None:
            return None
        self.last_val = self.validator(self.ema)
        if self.last_val is not None and (self.best_val is None or self.last_val > self.best_val):
            self.best_val = self.last_val
            self.best = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
        return self.last_val

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.log_path is not None and self.dist.is_main:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- the loop
    def run(self, callback: Callable[[TrainProgress], bool | None] | None = None) -> TrainResult:
        """Train until ``config.steps`` or until ``callback`` returns ``False``.

        A checkpoint is written every ``checkpoint_every`` steps and when the run ends (also when stopped).
        Returns the best validation EMA weights (or the last EMA weights when there was no validation).
        """
        t0 = time.perf_counter()
        stopped = False
        while self.step < self.cfg.steps:
            losses = self._train_step()
            step = self.step
            if self.cfg.validate_every and step % self.cfg.validate_every == 0 and self.dist.is_main:
                self.validate()
                self._log({"step": step, "val_psnr": self.last_val, "best_val_psnr": self.best_val})
            if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                self._log({"step": step, **losses, "seconds": round(time.perf_counter() - t0, 3)})
            if step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if callback is not None:
                progress = TrainProgress(
                    step,
                    self.cfg.steps,
                    {k: v for k, v in losses.items() if k != "lr"},
                    losses["lr"],
                    self.last_val,
                    time.perf_counter() - t0,
                )
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
