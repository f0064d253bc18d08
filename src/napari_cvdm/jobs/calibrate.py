"""``napari-cvdm calibrate``: fit a model's std calibration on held-out pairs and record it in a model file.

The pairs are simulated with the validation seed (:data:`~napari_cvdm.data.simulate.VALIDATION_SEED`), never
the test seed that ``evaluate`` reports on, from the training classes only (test-only classes stay unseen), or
read from a folder of the user's own pairs. See :mod:`napari_cvdm.inference.uncertainty` for what is fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.simulate import VALIDATION_SEED
from ..inference.uncertainty import StdCalibration
from .evaluate import Example, held_out_set, read_pair_folder
from .std_fit import fit_calibration, fit_physics_weight, fit_scale, fit_smoothing, fit_smoothing_and_weight

__all__ = [
    "CalibrationRequest",
    "calibration_pairs",
    "fit_model_calibration",
    "calibrate_model",
    "calibration_remarks",
    "calibration_report",
    "partial_counts",
    "SPREAD_SHARE_WARNING",
]

#: Below this share of the calibrated variance the samples' spread is said not to track the error.
SPREAD_SHARE_WARNING = 0.25


@dataclass(frozen=True)
class CalibrationRequest:
    """Calibrate a model's std on held-out pairs so that ±2σ covers 95 percent of the error (and ±1σ about 68);
    write a copy of the model file that records it (predict then reports the calibrated std).

    Parameters
    ----------
    model
        sr, qpi (the bundled models) or a model file.
    output
        The calibrated model file to write (.safetensors).
    data
        Folder with inputs/ and targets/ of your own pairs (default: simulated with the validation seed).
    n_per_class
        Simulated pairs per class (qpi: per class, noise level and pure/absorbing).
    size
        Simulated input side in pixels (default: the task's).
    classes
        Structure classes (sr) or phase sources (qpi) to simulate (default: those the model was trained on).
    images
        Folder of grayscale images to draw phase from (qpi).
    """

    model: str = field(metadata={"cli": "--model"})
    output: Path = field(metadata={"cli": "--output"})
    data: Path | None = field(default=None, metadata={"cli": "--data"})
    n_per_class: int = field(default=6, metadata={"cli": "--n-per-class"})
    size: int | None = field(default=None, metadata={"cli": "--size"})
    classes: list[str] | None = field(default=None, metadata={"cli": "--classes|--structures|--sources"})
    images: Path | None = field(default=None, metadata={"cli": "--images"})

    def __post_init__(self) -> None:
        if Path(self.output).suffix != ".safetensors":
            raise ValueError(f"{self.output}: the calibrated model must be a .safetensors file")
        if self.n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {self.n_per_class}")


def calibration_pairs(request: CalibrationRequest, model: Any) -> list[Example]:
    """The pairs a request calibrates on (the folder's, or simulated with the validation seed; as many again of
    the variant a share of the model's training pairs was drawn as, where it records one)."""
    from ..data.simulate import load_grayscale_images

    if request.data is not None:
        return read_pair_folder(request.data)
    images = load_grayscale_images(request.images) if request.images else None
    classes = model.task.check_classes(request.classes, with_images=bool(images)) or _trained(model, bool(images))
    drawn = (request.n_per_class, request.size, VALIDATION_SEED, model.optics, classes, images)
    pairs = held_out_set(model.task, *drawn)
    variant = model.trained_variant
    return pairs + held_out_set(model.task, *drawn, variant) if variant else pairs


def _trained(model: Any, with_images: bool) -> list[str] | None:
    """The classes the model was trained on (photos only when an image folder is given), or ``None`` (the task's
    training classes)."""
    names = [c for c in model.trained_classes or () if with_images or c != "images"]
    return names or None


def fit_model_calibration(
    model: Any, examples: list[Example], options: Any, progress: Callable[[int, int], None] | None = None
) -> StdCalibration:
    """Sample every pair with ``options`` (the samples' own std, before any calibration the file has) and fit
    :func:`~napari_cvdm.jobs.std_fit.fit_calibration` to the errors of the means.

    Parameters
    ----------
    model
        A :class:`~napari_cvdm.inference.models.CVDMModel`.
    options
        :class:`~napari_cvdm.inference.predict.SamplingOptions` (at least 2 samples: the std needs them).
    """
    if options.n_samples < 2:
        raise ValueError("calibration needs at least 2 samples per image (--samples 2 or more)")
    counts = partial_counts(options.n_samples)
    stds, errors, units, physics = {n: [] for n in counts}, {n: [] for n in counts}, [], []
    for k, ex in enumerate(examples):
        samples = model.sample_raw(ex.input, options).samples  # (N, H', W'), physical units
        for n in counts:
            stds[n].append(samples[:n].std(0, ddof=1))
            errors[n].append(model.task.error(samples[:n].mean(0), ex.target))
        units.append(model.value_units(ex.input)[0])
        physics.append(model.task.physics_variance(model.task.check_input(ex.input)[0], model.optics))
        if progress is not None:
            progress(k + 1, len(examples))
    n = options.n_samples
    maps = None if any(v is None for v in physics) else physics
    radius, weight, ranking, physics_ranking = _smoothing_and_weight(model, stds[n], errors[n], maps, units)
    cal = fit_calibration(stds[n], errors[n], units, radius, physics_variances=maps, physics_weight=weight)
    steps = options.steps or model.default_steps
    record = {**cal.fitted_on, "pairs": len(examples), "samples": n, "steps": steps}
    if ranking:  # Spearman ρ(std, |error|) at each smoothing radius tried (output pixels)
        record["smoothing_rho"] = {f"{r:.2f}": round(rho, 4) for r, rho in ranking.items()}
    if physics_ranking:  # the same without and with the task's physics variance (at the weight fitted)
        record["physics_rho"] = {k: round(v, 4) for k, v in physics_ranking[radius].items() if k != "weight"}
        record["smoothing_physics_rho"] = {f"{r:.2f}": round(v["with_physics"], 4) for r, v in physics_ranking.items()}
        record["physics"] = model.task.physics_variance_label
    record["groups"] = sorted({ex.group for ex in examples})
    record["input_side"] = int(np.median([max(ex.input.shape[-2:]) for ex in examples]))  # px; the std depends on it
    if options.tile_size:
        record["tile_size"] = options.tile_size
    scales = {m: fit_scale(stds[m], errors[m], units, cal, physics_variances=maps) for m in counts if m < n}
    return dataclasses.replace(cal, fitted_on=record, scales=scales)


def _smoothing_and_weight(
    model: Any, stds: list[np.ndarray], errors: list[np.ndarray], maps: list[np.ndarray] | None, units: list[float]
) -> tuple[float, float, dict[float, float], dict[float, dict[str, float]]]:
    """``(radius, weight, ρ of the spread alone by radius, ρ with the physics variance by radius)``: chosen
    together when the task has a physics variance and a smoothing radius (:func:`fit_smoothing_and_weight`),
    else the radius alone (:func:`fit_smoothing`, weight 0, no second table)."""
    task_radius = model.task.std_smoothing(model.optics)
    if maps is None:
        radius, ranking = fit_smoothing(stds, errors, task_radius)
        return radius, 0.0, ranking, {}
    if task_radius <= 0:  # nothing to pool: the weight alone
        weight, rho = fit_physics_weight(stds, errors, maps, units, 0.0)
        return 0.0, weight, {}, {0.0: {**rho, "weight": weight}}
    radius, weight, table = fit_smoothing_and_weight(stds, errors, maps, units, task_radius)
    return radius, weight, {r: row["spread"] for r, row in table.items()}, table


def partial_counts(n_samples: int) -> list[int]:
    """The numbers of samples whose mean and spread a progressive run of ``n_samples`` shows (2, 4, 8, …,
    ``n_samples``; :func:`~napari_cvdm.diffusion.sampler.round_sizes`), each at least 2."""
    from itertools import accumulate

    from ..diffusion.sampler import round_sizes

    return [n for n in accumulate(round_sizes(n_samples)) if n >= 2]


def calibrate_model(
    request: CalibrationRequest, options: Any, progress: Callable[[int, int], None] | None = None
) -> StdCalibration:
    """Fit the calibration of ``request.model`` and write ``request.output`` with it; the written model samples
    by default with the steps the std was calibrated at (its spread depends on them)."""
    from ..inference.models import load_model, save_calibrated

    model = load_model(request.model)
    examples = calibration_pairs(request, model)
    cal = fit_model_calibration(model, examples, options, progress)
    seed = "your pairs" if request.data is not None else f"simulated, seed {VALIDATION_SEED}"
    cal = dataclasses.replace(cal, fitted_on={**cal.fitted_on, "data": str(request.data or seed)})
    sampling = {**model.metadata.get("sampling", {}), "default_steps": cal.fitted_on["steps"]}
    save_calibrated(dataclasses.replace(model, metadata={**model.metadata, "sampling": sampling}), cal, request.output)
    return cal


def calibration_remarks(calibration: StdCalibration) -> list[str]:
    """Plain-text warnings about a fitted calibration: a std that is mostly its floor (the samples' spread
    does not track the error on these pairs)."""
    share = calibration.fitted_on.get("spread_share")
    if share is None or share >= SPREAD_SHARE_WARNING:
        return []
    return [
        f"the samples' spread makes only {share:.0%} of the calibrated variance: on these pairs the model's std "
        "does not track its error (the calibrated std is mostly a constant floor); fine-tune or retrain on data "
        "like these pairs"
    ]


def calibration_report(cal: StdCalibration) -> list[str]:
    """What a fitted calibration says, line by line: the scale and floor with the coverage before and after, the
    pooling radius chosen, the physics variance's weight and the running-result scales."""
    before, after = cal.fitted_on["coverage_before"], cal.fitted_on["coverage_after"]
    lines = [
        f"{cal.fitted_on['pairs']} pairs ({cal.fitted_on['data']}): std × {cal.scale:.3g}, floor {cal.floor:.3g} "
        f"(normalised units); within ±1σ {before['1sigma']:.1%} -> {after['1sigma']:.1%}, within ±2σ "
        f"{before['2sigma']:.1%} -> {after['2sigma']:.1%}"
    ]
    if "smoothing_rho" in cal.fitted_on:
        joined = cal.fitted_on.get("smoothing_physics_rho", {})
        tried = ", ".join(
            f"{r} px: {rho:.2f}" + (f" ({joined[r]:.2f} with physics)" if r in joined else "")
            for r, rho in cal.fitted_on["smoothing_rho"].items()
        )
        lines.append(f"variance averaged over {cal.smoothing:.2f} px (Spearman ρ(std, |error|) by radius: {tried})")
    if "physics_rho" in cal.fitted_on:
        r, what = cal.fitted_on["physics_rho"], cal.fitted_on.get("physics", "the task's physics variance")
        kept = (
            f"added with weight {cal.physics_weight:.3g}" if cal.physics_weight > 0 else "not added (it does not help)"
        )
        lines.append(
            f"{what}: {kept}; Spearman ρ(std, |error|) {r['spread']:.2f} from the spread alone, "
            f"{r['with_physics']:.2f} with it"
        )
    if cal.scales:
        running = ", ".join(f"{n} samples × {a:.3g}" for n, a in sorted(cal.scales.items()))
        lines.append(f"running results of a progressive run: {running}")
    return lines
