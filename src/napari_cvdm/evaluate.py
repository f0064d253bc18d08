"""Held-out evaluation against the classical baselines.

The default test sets are simulated on the fly with :data:`TEST_SEED`, which no
training run may use; baseline parameters (the task's: Richardson–Lucy iterations,
TIE regularization) are chosen on a separate validation set (:data:`VALIDATION_SEED`).
A method maps an input to ``(mean, std)`` (``std`` may be ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.dataset import paired_tiffs
from .data.simulate import TEST_SEED, VALIDATION_SEED
from .data.tiff import read_tiff
from .metrics import calibration
from .physics.optics import Optics
from .tasks import Method, Task

__all__ = ["TEST_SEED", "VALIDATION_SEED", "Example", "Method", "Row", "held_out_set", "read_pair_folder", "evaluate",
           "format_table", "model_method", "evaluation_methods"]


@dataclass(frozen=True)
class Example:
    """One test pair. ``group`` is the structure class or phase source."""

    name: str
    group: str
    input: np.ndarray
    target: np.ndarray


def held_out_set(task: Task, n_per_class: int = 6, size: int | None = None, seed: int = TEST_SEED,
             optics: Optics | None = None, classes: Sequence[str] | None = None,
             images: list[np.ndarray] | None = None) -> list[Example]:
    """Simulated pairs, ``n_per_class`` per class (default: the task's training classes), from one generator."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in classes or task.default_classes(with_images=bool(images)):
        for i in range(n_per_class):
            inp, tgt = task.simulate(cls, size or task.eval_size, rng, optics, images)
            out.append(Example(f"{cls}_{i:04d}", cls, inp, tgt))
    return out


def read_pair_folder(folder: str | Path) -> list[Example]:
    """Pairs from ``DIR/inputs/NAME.tif`` and ``DIR/targets/NAME.tif``.

    The group of a pair is its name up to the first underscore (``er_0003`` → ``er``).
    """
    return [Example(i.stem, i.stem.split("_")[0], read_tiff(i).data.astype(np.float32),
                    read_tiff(t).data.astype(np.float32)) for _, i, t in paired_tiffs(folder)]


@dataclass(frozen=True)
class Row:
    """Mean scores of one method on one group (``"all"`` for every example)."""

    group: str
    method: str
    n: int
    psnr: float
    ssim: float
    spearman: float = float("nan")
    coverage_2sigma: float = float("nan")


def evaluate(examples: Sequence[Example], methods: dict[str, Method], task: Task,
             progress: Callable[[int, int], None] | None = None) -> list[Row]:
    """Score every method on every example with the task's scores; rows per group and overall.

    ``progress(done, total)`` is called after each example.
    """
    per: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for k, ex in enumerate(examples):
        for name, method in methods.items():
            mean, std = method(ex.input)
            s = task.scores(mean, ex.target)
            rho, cov = float("nan"), float("nan")
            if std is not None:
                c = calibration(std, task.error(mean, ex.target))
                rho, cov = c.spearman, c.coverage_2sigma
            for group in (ex.group, "all"):
                per.setdefault((group, name), []).append((s.psnr, s.ssim, rho, cov))
        if progress is not None:
            progress(k + 1, len(examples))
    rows = []
    for (group, name), vals in per.items():
        arr = np.asarray(vals)
        cal = [float(np.nanmean(arr[:, k])) if np.isfinite(arr[:, k]).any() else float("nan") for k in (2, 3)]
        rows.append(Row(group, name, len(vals), float(arr[:, 0].mean()), float(arr[:, 1].mean()), *cal))
    order = {g: i for i, g in enumerate(dict.fromkeys(ex.group for ex in examples))}
    order["all"] = len(order)
    return sorted(rows, key=lambda r: (order[r.group], list(methods).index(r.method)))


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (also readable in a terminal)."""
    lines = ["| group | method | n | PSNR (dB) | SSIM | Spearman ρ(std, abs err) | within ±2σ |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = ("—", "—") if math.isnan(r.spearman) else (f"{r.spearman:.2f}", f"{r.coverage_2sigma:.3f}")
        lines.append(f"| {r.group} | {r.method} | {r.n} | {r.psnr:.2f} | {r.ssim:.3f} | {cal[0]} | {cal[1]} |")
    return "\n".join(lines)


def model_method(model: Any, options: Any) -> Method:
    """A :class:`~napari_cvdm.models.CVDMModel` as an evaluation method (mean and std)."""

    def method(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        pred = model.predict_with(x, options)
        return pred.mean, pred.std

    return method


def evaluation_methods(task: Task, optics: Optics, tune_on: Sequence[Example] = (), model: Any = None,
                       options: Any = None) -> tuple[dict[str, Method], str | None]:
    """The task's baselines (their parameter tuned on ``tune_on`` when given) and the model, if any.

    Returns
    -------
    methods, tuning
        Methods by display name, and a line reporting the tuning (``None`` without it).
    """
    tuning, parameter = None, None
    if tune_on:
        parameter, table = task.tune_baselines(tune_on, optics)
        tuning = f"validation PSNR by {task.baseline_parameter}: " + ", ".join(
            f"{k:g}: {v:.2f}" for k, v in table.items())
    methods = task.baselines(optics, parameter)
    if model is not None:
        steps = options.steps or model.default_steps
        methods[f"CVDM {model.name} ({options.n_samples} samples, {steps} steps)"] = model_method(model, options)
    return methods, tuning
