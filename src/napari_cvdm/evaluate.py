"""Held-out evaluation against the classical baselines.

The default test sets are simulated on the fly with :data:`TEST_SEED`, which no
training run may use; baseline parameters (Richardson–Lucy iterations, TIE
regularization) are chosen on a separate validation set (:data:`VALIDATION_SEED`).
A method maps an input to ``(mean, std)`` (``std`` may be ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.simulate import (
    QPI_SOURCES,
    SR_STRUCTURES,
    QPIOptics,
    simulate_qpi_pair,
    simulate_sr_pair,
)
from .data.dataset import paired_tiffs
from .data.tiff import read_tiff
from .metrics import calibration, qpi_scores, sr_scores
from .physics.tie import DEFAULT_TIE_REGULARIZATION, tie_phase
from .physics.widefield import DEFAULT_RL_ITERATIONS, WidefieldOptics, bicubic_upsample, richardson_lucy_sr

__all__ = [
    "TEST_SEED", "VALIDATION_SEED", "PHOTON_RANGE", "Example", "Method", "Row",
    "sr_test_set", "qpi_test_set", "read_pair_folder", "sr_baselines", "qpi_baselines",
    "evaluate", "format_table", "choose_rl_iterations", "choose_tie_regularization",
    "DEFAULT_RL_ITERATIONS", "DEFAULT_TIE_REGULARIZATION",
]

#: Seed of the default held-out test sets (never used for training).
TEST_SEED = 90_210_001
#: Seed of the validation sets used to choose baseline parameters.
VALIDATION_SEED = 90_210_002
#: Signal range of the sr simulator, photons per pixel.
PHOTON_RANGE = (15.0, 600.0)


@dataclass(frozen=True)
class Example:
    """One test pair. ``group`` is the structure class or phase source."""

    name: str
    group: str
    input: np.ndarray
    target: np.ndarray


#: ``input → (mean, std or None)``
Method = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sr_test_set(n_per_class: int = 6, size: int = 64, seed: int = TEST_SEED,
                optics: WidefieldOptics | None = None, structures: Sequence[str] | None = None) -> list[Example]:
    """Simulated sr pairs, ``n_per_class`` per structure, photons log-uniform in :data:`PHOTON_RANGE`."""
    rng = np.random.default_rng(seed)
    out = []
    for structure in structures or list(SR_STRUCTURES):
        for i in range(n_per_class):
            pair = simulate_sr_pair(structure, (size, size), _log_uniform(rng, *PHOTON_RANGE), rng, optics)
            out.append(Example(f"{structure}_{i:04d}", structure, pair.input, pair.target))
    return out


def qpi_test_set(n_per_class: int = 6, size: int = 128, seed: int = TEST_SEED, optics: QPIOptics | None = None,
                 sources: Sequence[str] = ("cells", "textures"),
                 images: list[np.ndarray] | None = None) -> list[Example]:
    """Simulated qpi pairs, ``n_per_class`` per phase source."""
    rng = np.random.default_rng(seed)
    out = []
    for source in sources:
        if source not in QPI_SOURCES:
            raise ValueError(f"unknown phase source {source!r}")
        for i in range(n_per_class):
            pair = simulate_qpi_pair(source, (size, size), rng, optics, images)
            out.append(Example(f"{source}_{i:04d}", source, pair.input, pair.target))
    return out


def read_pair_folder(folder: str | Path) -> list[Example]:
    """Pairs from ``DIR/inputs/NAME.tif`` and ``DIR/targets/NAME.tif``.

    The group of a pair is its name up to the first underscore (``er_0003`` → ``er``).
    """
    return [Example(i.stem, i.stem.split("_")[0], read_tiff(i).data.astype(np.float32),
                    read_tiff(t).data.astype(np.float32)) for _, i, t in paired_tiffs(folder)]


def sr_baselines(optics: WidefieldOptics | None = None,
                 rl_iterations: int = DEFAULT_RL_ITERATIONS) -> dict[str, Method]:
    """Bicubic interpolation and Richardson–Lucy deconvolution."""
    optics = optics or WidefieldOptics()
    return {
        "bicubic": lambda x: (bicubic_upsample(x, optics.gain), None),
        f"richardson-lucy ({rl_iterations} it.)": lambda x: (richardson_lucy_sr(x, optics, rl_iterations), None),
    }


def qpi_baselines(optics: QPIOptics | None = None,
                  regularization: float = DEFAULT_TIE_REGULARIZATION) -> dict[str, Method]:
    """The transport-of-intensity equation."""
    optics = optics or QPIOptics()
    return {
        f"TIE (alpha={regularization:g}/um^2)": lambda x: (
            tie_phase(x[0], x[1], optics.dz_um, optics.wavelength_um, optics.pixel_um, regularization), None),
    }


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


def evaluate(examples: Sequence[Example], methods: dict[str, Method], task: str) -> list[Row]:
    """Score every method on every example; rows per group and overall.

    Parameters
    ----------
    task
        ``"sr"`` (affine intensity fit) or ``"qpi"`` (means removed).
    """
    if task not in ("sr", "qpi"):
        raise ValueError(f"task must be 'sr' or 'qpi', got {task!r}")
    score = sr_scores if task == "sr" else qpi_scores
    per: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for ex in examples:
        for name, method in methods.items():
            mean, std = method(ex.input)
            s = score(mean, ex.target)
            rho, cov = float("nan"), float("nan")
            if std is not None:
                err = mean - ex.target if task == "sr" else (mean - mean.mean()) - (ex.target - ex.target.mean())
                c = calibration(std, err)
                rho, cov = c.spearman, c.coverage_2sigma
            for group in (ex.group, "all"):
                per.setdefault((group, name), []).append((s.psnr, s.ssim, rho, cov))
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


def choose_rl_iterations(examples: Sequence[Example], optics: WidefieldOptics | None = None,
                         candidates: Sequence[int] = (3, 5, 10, 20, 40, 80)) -> tuple[int, dict[int, float]]:
    """Richardson–Lucy iteration count with the best mean PSNR on validation examples."""
    optics = optics or WidefieldOptics()
    means = {}
    for it in candidates:
        means[it] = float(np.mean([sr_scores(richardson_lucy_sr(ex.input, optics, it), ex.target).psnr
                                   for ex in examples]))
    return max(means, key=means.get), means


def choose_tie_regularization(examples: Sequence[Example], optics: QPIOptics | None = None,
                              candidates: Sequence[float] = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1)
                              ) -> tuple[float, dict[float, float]]:
    """TIE Tikhonov α (µm⁻²) with the best mean PSNR on validation examples."""
    optics = optics or QPIOptics()
    means = {}
    for a in candidates:
        means[a] = float(np.mean([qpi_scores(tie_phase(ex.input[0], ex.input[1], optics.dz_um, optics.wavelength_um,
                                                       optics.pixel_um, a), ex.target).psnr for ex in examples]))
    return max(means, key=means.get), means
