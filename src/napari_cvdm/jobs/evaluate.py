"""Held-out evaluation against the classical baselines.

The default test sets are simulated on the fly with :data:`TEST_SEED`, which no
training run may use; baseline parameters (the task's: Richardson–Lucy iterations,
TIE regularization) are chosen on a separate validation set (:data:`VALIDATION_SEED`).
A method maps an input to ``(mean, std)`` (``std`` may be ``None``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import paired_tiffs
from ..data.metrics import calibration
from ..data.simulate import TEST_SEED, VALIDATION_SEED
from ..data.tiff import read_tiff
from ..inference.uncertainty import RELIABILITY_LEVELS
from ..physics.optics import Optics
from ..tasks import Method, Task
from ..tasks.base import MethodNote, run_noting

__all__ = [
    "TEST_SEED",
    "VALIDATION_SEED",
    "Example",
    "Method",
    "Row",
    "held_out_set",
    "read_pair_folder",
    "evaluate",
    "format_table",
    "format_reliability",
    "write_rows",
    "model_method",
    "evaluation_methods",
    "EvaluationRequest",
    "Evaluation",
    "prepare_evaluation",
]


@dataclass(frozen=True)
class EvaluationRequest:
    """Score a model on held-out data beside the classical baselines: PSNR, SSIM and the calibration of the
    std, per class.

    Parameters
    ----------
    model
        sr, qpi (the bundled models; without the file, the baselines alone) or a model file.
    data
        Folder with inputs/ and targets/ (default: simulated with the held-out seed).
    n_per_class
        Simulated pairs per class (qpi: per class, noise level and pure/absorbing).
    size
        Simulated input side in pixels (default: the task's).
    classes
        Structure classes (sr) or phase sources (qpi), test-only classes included (default: the training classes).
    images
        Folder of grayscale images to draw phase from (qpi).
    tune_baselines
        Choose the baselines' parameter on a validation set first.
    variant
        Hold out only this variant of the simulator (sr: aberrated — out of focus and with spherical aberration;
        cytosol — inside cells whose cytoplasm glows; qpi: pure, weakly absorbing, strongly absorbing or fine
        absorption).
    json
        Also write the rows (reliability diagrams included) to this JSON file.
    """

    model: str = field(metadata={"cli": "--model"})
    data: Path | None = field(default=None, metadata={"cli": "--data"})
    n_per_class: int = field(default=6, metadata={"cli": "--n-per-class"})
    size: int | None = field(default=None, metadata={"cli": "--size"})
    classes: list[str] | None = field(default=None, metadata={"cli": "--classes|--structures|--sources"})
    images: Path | None = field(default=None, metadata={"cli": "--images"})
    tune_baselines: bool = field(default=False, metadata={"cli": "--tune-baselines"})
    variant: str | None = field(default=None, metadata={"cli": "--variant"})
    json: Path | None = field(default=None, metadata={"cli": "--json"})


@dataclass(frozen=True)
class Example:
    """One test pair. ``group`` is the structure class or phase source; ``tags`` further groups it belongs to
    (imaging conditions such as ``"σ=0.01 pure"``)."""

    name: str
    group: str
    input: np.ndarray
    target: np.ndarray
    tags: tuple[str, ...] = ()


def held_out_set(
    task: Task,
    n_per_class: int = 6,
    size: int | None = None,
    seed: int = TEST_SEED,
    optics: Optics | None = None,
    classes: Sequence[str] | None = None,
    images: list[np.ndarray] | None = None,
    variant: str | None = None,
) -> list[Example]:
    """Simulated pairs, ``n_per_class`` per class (default: the task's training classes) and held-out condition
    of the task (:meth:`Task.held_out_conditions`), from one generator; with ``variant`` only the conditions of
    that variant (those without one drawn as it)."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in classes or task.default_classes(with_images=bool(images)):
        k = 0
        for tag, level, kind in held_out_conditions(task, variant):
            for _ in range(n_per_class):
                inp, tgt = task.simulate(cls, size or task.eval_size, rng, optics, images, level, kind)
                out.append(Example(f"{cls}_{k:04d}", cls, inp, tgt, (tag,) if tag else ()))
                k += 1
    return out


def held_out_conditions(task: Task, variant: str | None = None) -> list[tuple[str, float | None, str | None]]:
    """The task's held-out conditions (:meth:`Task.held_out_conditions`); with ``variant`` those of that variant,
    a condition without one drawn as it (tagged with its name)."""
    conditions = task.held_out_conditions()
    if variant is None:
        return conditions
    if problem := task.variant_error(variant):
        raise ValueError(f"--variant: {problem}")
    return [(tag or variant, level, variant) for tag, level, v in conditions if v in (None, variant)]


def read_pair_folder(folder: str | Path) -> list[Example]:
    """Pairs from ``DIR/inputs/NAME.tif`` and ``DIR/targets/NAME.tif``.

    The group of a pair is its name up to the first underscore (``er_0003`` → ``er``).
    """
    return [
        Example(
            i.stem, i.stem.split("_")[0], read_tiff(i).data.astype(np.float32), read_tiff(t).data.astype(np.float32)
        )
        for _, i, t in paired_tiffs(folder)
    ]


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
    coverage_1sigma: float = float("nan")
    reliability: tuple[float, ...] = ()


def evaluate(
    examples: Sequence[Example],
    methods: dict[str, Method],
    task: Task,
    progress: Callable[[int, int], None] | None = None,
) -> list[Row]:
    """Score every method on every example with the task's scores; rows per group and overall.

    ``progress(done, total)`` is called after each example.
    """
    nan = float("nan")
    per: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    notes: dict[str, list[str]] = {}
    for k, ex in enumerate(examples):
        for name, method in methods.items():
            mean, std = run_noting(method, ex.input, notes.setdefault(name, []))
            s = task.scores(mean, ex.target)
            cal: tuple[float, ...] = (nan,) * (3 + len(RELIABILITY_LEVELS))
            if std is not None:
                c = calibration(std, task.error(mean, ex.target))
                cal = (c.spearman, c.coverage_2sigma, c.coverage_1sigma, *c.reliability)
            for group in (ex.group, *ex.tags, "all"):
                per.setdefault((group, name), []).append((s.psnr, s.ssim, *cal))
        if progress is not None:
            progress(k + 1, len(examples))
    for name, said in notes.items():
        if said:  # once per method, not once per pair
            text = said[0] if said[0].startswith(name.split(" (")[0]) else f"{name}: {said[0]}"
            different = " (the first pair's reason)" if len(set(said)) > 1 else ""
            warnings.warn(f"{text} [{len(said)} of {len(examples)} pairs{different}]", MethodNote, stacklevel=2)
    rows = []
    for (group, name), vals in per.items():
        arr = np.asarray(vals)
        cal = [float(np.nanmean(col)) if np.isfinite(col).any() else nan for col in arr[:, 2:].T]
        rel = tuple(cal[3:]) if np.isfinite(cal[3:]).all() else ()
        rows.append(Row(group, name, len(vals), float(arr[:, 0].mean()), float(arr[:, 1].mean()), *cal[:3], rel))
    order = {
        g: i
        for i, g in enumerate(dict.fromkeys([ex.group for ex in examples] + [t for ex in examples for t in ex.tags]))
    }
    order["all"] = len(order)
    return sorted(rows, key=lambda r: (order[r.group], list(methods).index(r.method)))


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (also readable in a terminal)."""
    lines = [
        "| group | method | n | PSNR (dB) | SSIM | Spearman ρ(std, abs err) | within ±1σ | within ±2σ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cal = (
            ("—",) * 3
            if math.isnan(r.spearman)
            else (f"{r.spearman:.2f}", f"{r.coverage_1sigma:.3f}", f"{r.coverage_2sigma:.3f}")
        )
        lines.append(f"| {r.group} | {r.method} | {r.n} | {r.psnr:.2f} | {r.ssim:.3f} | " + " | ".join(cal) + " |")
    return "\n".join(lines)


def format_reliability(rows: Sequence[Row], group: str = "all") -> str:
    """A reliability table of the methods with a std on ``group``: the observed fraction of pixels within the
    Gaussian interval of each nominal probability (calibrated: observed = nominal)."""
    lines = [
        "| method | " + " | ".join(f"{p:g}" for p in RELIABILITY_LEVELS) + " |",
        "|---|" + "---|" * len(RELIABILITY_LEVELS),
    ]
    lines += [
        f"| {r.method} | " + " | ".join(f"{v:.3f}" for v in r.reliability) + " |"
        for r in rows
        if r.group == group and r.reliability
    ]
    return "\n".join(lines) if len(lines) > 2 else ""


def write_rows(rows: Sequence[Row], path: str | Path, notes: Sequence[str] = ()) -> Path:
    """The rows as JSON: ``{"notes": [...], "reliability_levels": [...], "rows": [{group, method, ...}]}``."""
    import dataclasses
    import json

    path = Path(path)
    record = {
        "notes": list(notes),
        "reliability_levels": list(RELIABILITY_LEVELS),
        "rows": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(r).items()}
            for r in rows
        ],
    }
    path.write_text(json.dumps(record, indent=1))
    return path


def model_method(model: Any, options: Any) -> Method:
    """A :class:`~napari_cvdm.inference.models.CVDMModel` as an evaluation method (mean and std)."""

    def method(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        pred = model.sample_with(x, options)
        return pred.mean, pred.std

    return method


def evaluation_methods(
    task: Task, optics: Optics, tune_on: Sequence[Example] = (), model: Any = None, options: Any = None
) -> tuple[dict[str, Method], str | None]:
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
            f"{k:g}: {v:.2f}" for k, v in table.items()
        )
    methods = task.baselines(optics, parameter)
    if model is not None:
        steps = options.steps or model.default_steps
        methods[f"CVDM {model.name} ({options.n_samples} samples, {steps} steps)"] = model_method(model, options)
    return methods, tuning


@dataclass
class Evaluation:
    """A prepared evaluation: the task, the pairs, the methods, and notes for the reader."""

    task: Task
    examples: list[Example]
    methods: dict[str, Method]
    notes: list[str]

    def run(self, progress: Callable[[int, int], None] | None = None) -> list[Row]:
        """Score every method on every pair."""
        return evaluate(self.examples, self.methods, self.task, progress)


def prepare_evaluation(request: EvaluationRequest, options: Any, optics: dict[str, Any] | None = None) -> Evaluation:
    """The pairs and methods of a request: the model (or, for a bundled name without its file, the baselines
    alone), the optics (the model's, with ``optics`` changed), the held-out or given pairs.

    Parameters
    ----------
    options
        :class:`~napari_cvdm.inference.predict.SamplingOptions` of the model.
    """
    from ..data.simulate import load_grayscale_images
    from ..inference.models import ModelFileError, load_model
    from ..inference.optics_match import model_at
    from ..tasks import TASKS, get_task

    notes, model = [], None
    try:
        model = load_model(request.model)
    except ModelFileError as err:
        if request.model not in TASKS:
            raise
        notes.append(f"note: {err}; scoring the classical baselines only")
    task = model.task if model is not None else get_task(request.model)
    o = task.optics_with(optics or {}, model.optics if model is not None else None)
    if model is not None and optics:  # pairs simulated at other optics: the model mapped onto them
        model = model_at(model, optics)
        notes.append(f"note: the model runs at these optics by physics similarity: {o.describe()}")
    images = load_grayscale_images(request.images) if request.images else None
    classes = task.check_classes(request.classes, with_images=bool(images))
    if request.data:
        examples = read_pair_folder(request.data)
    else:
        examples = held_out_set(task, request.n_per_class, request.size, TEST_SEED, o, classes, images, request.variant)
    tune_on = (
        held_out_set(task, 4, request.size, VALIDATION_SEED, o, classes, images, request.variant)
        if request.tune_baselines
        else ()
    )
    methods, tuning = evaluation_methods(task, o, tune_on, model, options)
    notes += [tuning] if tuning else []
    notes.append(
        f"{task.name}: {len(examples)} held-out pairs" + ("" if request.data else f" (simulated, seed {TEST_SEED})")
    )
    return Evaluation(task, examples, methods, notes)
