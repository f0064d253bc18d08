"""Several processes (torchrun, DDP-style): joining the group, sharing weights, averaging gradients, stopping
together on a signal. One process is rank 0 of 1 and needs none of it."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = [
    "DistributedContext",
    "init_distributed",
    "rank_device",
    "broadcast_from_main",
    "average_gradients",
    "finish",
    "StopOnSignal",
]


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process validates, logs and writes files."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo elsewhere."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def rank_device(device: torch.device, ctx: DistributedContext) -> torch.device:
    """One GPU per process: a CUDA device becomes this process's ``cuda:LOCAL_RANK`` under torchrun."""
    return torch.device("cuda", ctx.local_rank) if ctx.world_size > 1 and device.type == "cuda" else device


def broadcast_from_main(tensors: Iterable[torch.Tensor], ctx: DistributedContext) -> None:
    """Give every rank rank 0's values (in place)."""
    if ctx.world_size > 1:
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t, src=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], ctx: DistributedContext) -> None:
    """Average the gradients over the ranks (in place; a missing gradient counts as zero)."""
    if ctx.world_size > 1:
        import torch.distributed as dist

        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= ctx.world_size


def finish(ctx: DistributedContext) -> None:
    """Wait for every rank, then leave the process group."""
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


class StopOnSignal:
    """Turns SIGINT/SIGTERM into a request to stop after the current step (a context manager).

    Under torchrun every process asks the others, so that all stop after the same step.
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self._previous: dict = {}

    @property
    def signal_name(self) -> str:
        """``SIGINT``/``SIGTERM``, or ``request`` when no signal came."""
        return signal.Signals(self.signal_number).name if self.signal_number else "request"

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal_number = signum

    def requested(self, ctx: DistributedContext, device: torch.device) -> bool:
        """Whether any process was asked to stop."""
        if ctx.world_size <= 1:
            return self.signal_number != 0
        import torch.distributed as dist

        flag = torch.tensor([float(self.signal_number)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.signal_number = int(flag.item())
        return self.signal_number != 0
