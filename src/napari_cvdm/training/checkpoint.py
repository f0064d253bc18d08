"""Training checkpoints: the full state of a run in one safetensors file, written atomically.

Tensors: weights (``net.``), EMA weights (``ema.``), best EMA weights (``best.``) and the optimizer state
(``opt.<param>.<key>``); everything else (step, task, architecture, normalisation, settings, validation
figures, the tail of the history) as JSON metadata. Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data._files import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "write_checkpoint", "read_checkpoint"]

CHECKPOINT_FORMAT = "napari-cvdm-checkpoint"


@dataclass
class Checkpoint:
    """The state of a training run.

    Attributes
    ----------
    net, ema, best
        State dicts of the network, its EMA copy and the best validation EMA weights (``best`` may be empty).
    optimizer
        ``torch.optim.Optimizer.state_dict()`` form.
    meta
        ``step``, ``task``, ``network`` (architecture dict) and anything else JSON-serialisable.
    """

    net: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def write_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (a temporary file, then a rename)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for prefix, sd in (("net.", ckpt.net), ("ema.", ckpt.ema), ("best.", ckpt.best)):
        for k, v in sd.items():
            tensors[prefix + k] = v.detach().to("cpu").contiguous()
    for idx, state in ckpt.optimizer["state"].items():
        for k, v in state.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().to("cpu").contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in ckpt.optimizer["param_groups"]]
    meta = {"format": CHECKPOINT_FORMAT, **ckpt.meta, "param_groups": groups}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"checkpoint": json.dumps(meta)}))
    return path


def read_checkpoint(path: str | Path, device: torch.device, param_ids: list[list[int]]) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint`.

    Parameters
    ----------
    device
        Where the tensors go (MPS checkpoints are read to the CPU first).
    param_ids
        The ``params`` lists of the current optimizer's parameter groups (the file records settings only).

    Raises
    ------
    ValueError
        Not a napari-cvdm checkpoint.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("checkpoint", "{}"))
    if meta.pop("format", None) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a napari-cvdm training checkpoint")
    tensors = load_file(str(path), device=str(device) if device.type != "mps" else "cpu")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in part("opt.").items():
        idx, key = k.split(".", 1)
        opt_state.setdefault(int(idx), {})[key] = v
    groups = [dict(g, params=ids) for g, ids in zip(meta.pop("param_groups"), param_ids)]
    return Checkpoint(part("net."), part("ema."), part("best."), {"state": opt_state, "param_groups": groups}, meta)
