"""What a resumed training run does differently from the run that wrote its checkpoint, said to the user."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any

from .train import TrainConfig, lr_at

__all__ = ["resume_notes"]

#: Settings that shape the learning rate over the run (:func:`lr_at`).
_LR_SETTINGS = ("lr", "warmup_steps", "lr_decay_steps", "steps")
#: Settings a resumed run may change without a note: how often it writes, validates and logs.
_BOOKKEEPING = ("checkpoint_every", "validate_every", "log_every", "validation_samples", "validation_steps")


def resume_notes(saved: dict[str, Any], config: TrainConfig, step: int) -> list[str]:
    """How a run resumed at ``step`` differs from the run that wrote its checkpoint.

    Parameters
    ----------
    saved
        The checkpoint's settings (:class:`TrainConfig` as a dict; empty for a checkpoint that lacks them).
    config
        The resumed run's settings.
    step
        The checkpoint's step.

    Returns
    -------
    list of str
        One sentence per difference, for the user: nothing left to train, a jump of the learning rate (with the
        option that avoids it when only ``steps`` changed), the other changed settings. Empty when the run
        continues as the checkpoint's run would have.
    """
    names = {f.name: f.metadata.get("cli", f.name) for f in fields(TrainConfig)}
    before = TrainConfig(**{**asdict(config), **{k: v for k, v in saved.items() if k in names}})

    def change(k: str) -> str:
        return f"{names[k]} {getattr(before, k)} → {getattr(config, k)}"

    if step >= config.steps:
        return [
            f"the checkpoint is at step {step}, at or past --steps {config.steps}: nothing is left to train; "
            "the model is written from the checkpoint"
        ]
    notes = []
    old, new = lr_at(step + 1, before), lr_at(step + 1, config)
    if not math.isclose(old, new, rel_tol=1e-3):
        changed = ", ".join(change(k) for k in _LR_SETTINGS if getattr(before, k) != getattr(config, k))
        notes.append(
            f"the learning rate goes on at {new:.2e} where the checkpoint's run had come to {old:.2e} ({changed})"
        )
        if all(getattr(before, k) == getattr(config, k) for k in _LR_SETTINGS if k != "steps"):
            notes[-1] += f"; --lr-decay-steps {before.lr_decay_steps or before.steps} keeps the checkpoint's decay"
    others = sorted(set(names) - set(_LR_SETTINGS) - set(_BOOKKEEPING))
    return notes + [
        f"a setting differs from the checkpoint's run: {change(k)}"
        for k in others
        if getattr(before, k) != getattr(config, k)
    ]
