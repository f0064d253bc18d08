"""Real widefield images scored against a reference of another modality (a SIM reconstruction, a STORM render):
what users get on their own microscopes, beside bicubic and Richardson–Lucy (with the stated optics, and tuned on
the pair against the reference: the best a classical deconvolution does there).

A pair list is a JSON file::

    {"pairs": [{"name": "mitochondria", "input": "wf.tif", "reference": "storm4x.tif",
                "reference_zoom": 4, "reference_blur_px": 1.0, "optics": {"pixel_um": 0.1}}]}

File names are relative to the data folder. The reference, on a grid ``reference_zoom`` times the input's, is
binned to twice the input's grid and blurred by ``reference_blur_px`` output pixels (a localisation render is a
density, not an intensity). A reference made by a filter beyond the resolution the model aims at (a Wiener SIM
reconstruction damps what its bands carry weakly) names that filter's frequency response, ``"reference_transfer":
"transfer.tif"`` (``(2H, 2W)``, in ``numpy.fft`` order), and every result is put through it before it is scored:
a result that is exactly what the model aims at then matches the reference up to the reference's own noise, and no
method gains from being as smooth as the reference. A reference with noise of its own names a map of its std,
``"reference_std": "std.tif"`` (``(2H, 2W)``, reference units), which the ±2σ share joins to the result's.

Scores, on the inner part (16 output pixels of border left out): PSNR after an affine fit of the result to the
reference, the correlation of their band-passed detail, the FRC resolution against the reference (1/7 threshold),
and for a std the share of the (affine-scaled) error within ±2σ and its Spearman ρ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from ..data.metrics import affine_coefficients, affine_fit, psnr, spearman_rho
from ..data.tiff import read_tiff
from ..inference.predict import SamplingOptions
from ..physics.widefield import WidefieldOptics, richardson_lucy_sr

__all__ = [
    "RealEvaluationRequest",
    "RealPair",
    "read_real_pairs",
    "real_scores",
    "frc_resolution",
    "tuned_richardson_lucy",
    "evaluate_real_pairs",
    "format_real_table",
    "write_real_rows",
]

BORDER = 16
#: Richardson–Lucy tuned on a pair: PSF widths (the NA scaled) and iteration counts tried.
RL_NA_FACTORS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
RL_ITERATIONS = (3, 5, 10, 20, 40)


@dataclass(frozen=True)
class RealEvaluationRequest:
    """Score an sr model on real widefield images against references of another modality (SIM, STORM), beside
    bicubic and Richardson–Lucy (stated optics, and tuned on each pair).

    Parameters
    ----------
    model
        sr or an sr model file.
    pairs
        JSON file {"pairs": [{"name", "input", "reference", "reference_zoom" (the reference's grid over the
        input's), "reference_blur_px" (σ on the output grid), optionally "reference_transfer" (the filter the
        reference was made with, applied to every result) and "reference_std" (a map of its noise std), "optics":
        {"pixel_um", "na", "wavelength_um"}}]}.
    data
        Folder the pair list's file names are in (default: the list's folder).
    json
        Also write the rows to this JSON file.
    """

    model: str = field(metadata={"cli": "--model"})
    pairs: Path = field(metadata={"cli": "--pairs"})
    data: Path | None = field(default=None, metadata={"cli": "--data"})
    json: Path | None = field(default=None, metadata={"cli": "--json"})


@dataclass(frozen=True)
class RealPair:
    """A widefield image ``(H, W)``, its reference on the output grid ``(2H, 2W)`` and what is known of its optics
    (field → value of :class:`~napari_cvdm.physics.widefield.WidefieldOptics`)."""

    name: str
    input: np.ndarray
    reference: np.ndarray
    optics: dict[str, float]
    transfer: np.ndarray | None = None
    reference_std: np.ndarray | None = None

    def as_reference_sees(self, image: np.ndarray) -> np.ndarray:
        """A result ``(2H, 2W)`` through the filter the reference was made with (unchanged without one)."""
        if self.transfer is None:
            return np.asarray(image, np.float64)
        return np.fft.ifft2(np.fft.fft2(np.asarray(image, np.float64)) * self.transfer).real


def _on_output_grid(reference: np.ndarray, zoom: int, blur_px: float, shape: tuple[int, int]) -> np.ndarray:
    """A reference on a grid ``zoom`` times the input's, binned to twice the input's grid and blurred."""
    b = zoom // 2
    h, w = reference.shape[0] // b * b, reference.shape[1] // b * b
    binned = np.asarray(reference, np.float64)[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))
    out = gaussian_filter(binned, blur_px) if blur_px > 0 else binned
    if out.shape[0] < shape[0] or out.shape[1] < shape[1]:
        raise ValueError(f"the reference covers {out.shape} output pixels, the input needs {shape}")
    return out[: shape[0], : shape[1]]


def read_real_pairs(spec: str | Path, data: str | Path | None = None) -> list[RealPair]:
    """The pairs a JSON pair list names (file names relative to ``data``, default the list's folder)."""
    spec = Path(spec)
    folder = Path(data) if data is not None else spec.parent
    pairs = []
    for entry in json.loads(spec.read_text())["pairs"]:
        image = np.asarray(read_tiff(folder / entry["input"]).data, np.float32)
        if image.ndim == 3:  # raw SIM frames: their mean is a widefield image
            image = image.mean(axis=0)
        shape = (2 * image.shape[0], 2 * image.shape[1])
        ref = _on_output_grid(
            read_tiff(folder / entry["reference"]).data,
            int(entry.get("reference_zoom", 2)),
            float(entry.get("reference_blur_px", 0.0)),
            shape,
        )
        transfer = _reference_map(folder, entry.get("reference_transfer"), shape)
        ref_std = _reference_map(folder, entry.get("reference_std"), shape)
        pairs.append(RealPair(entry["name"], image, ref, dict(entry.get("optics", {})), transfer, ref_std))
    return pairs


def _reference_map(folder: Path, name: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A map of the output grid ``shape`` that describes the reference (its filter in ``numpy.fft`` order, or its
    noise std) from ``folder / name`` (``None``: no file named)."""
    if name is None:
        return None
    values = np.asarray(read_tiff(folder / name).data, np.float64)
    if values.shape != shape:
        raise ValueError(
            f"{name}: the reference's map is {values.shape}, the results are {shape} (a filter or noise map is given "
            "on the output grid, twice the widefield image's size)"
        )
    return values


def _band(x: np.ndarray) -> np.ndarray:
    return gaussian_filter(x, 1.0) - gaussian_filter(x, 4.0)


def frc_resolution(estimate: np.ndarray, reference: np.ndarray) -> float:
    """The Fourier ring correlation of two ``(H, W)`` images (Hann-windowed): the period, in pixels, where it first
    drops below 1/7 (``inf`` where it never rises above)."""
    h, w = estimate.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    fa, fb = (np.fft.fft2((x - x.mean()) * win) for x in (estimate, reference))
    side = min(h, w)
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]) * side  # rings of 1/side cycles
    ring = np.minimum(np.round(radius).astype(int), side).ravel()
    n = side // 2
    power_a = np.bincount(ring, np.abs(fa).ravel() ** 2, side + 1)[1:n]
    power_b = np.bincount(ring, np.abs(fb).ravel() ** 2, side + 1)[1:n]
    frc = np.bincount(ring, (fa * np.conj(fb)).real.ravel(), side + 1)[1:n] / np.maximum(
        np.sqrt(power_a * power_b), 1e-30
    )
    below = np.nonzero(frc < 1 / 7)[0]
    if len(below) == 0:
        return 2.0
    return float("inf") if below[0] == 0 else side / (below[0] + 1)


def real_scores(
    mean: np.ndarray, std: np.ndarray | None, reference: np.ndarray, reference_std: np.ndarray | None = None
) -> dict[str, float]:
    """Scores of a result ``(2H, 2W)`` (and its std) against the reference, on the inner part. With the reference's
    own noise std ``(2H, 2W)`` (reference units), the ±2σ share counts the error against both stds joined in
    quadrature (``within_2sigma``; the result's alone: ``within_2sigma_own``)."""
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    e, r = np.asarray(mean, np.float64)[inner], reference[inner]
    gain, offset = affine_coefficients(e, r)
    fit = gain * e + offset
    band = np.corrcoef(_band(np.asarray(mean, np.float64))[inner].ravel(), _band(reference)[inner].ravel())[0, 1]
    out = {"psnr": psnr(fit, r), "band_corr": float(band), "frc_px": frc_resolution(e, r)}
    if std is not None and np.any(std > 0):
        s = abs(gain) * np.asarray(std, np.float64)[inner]
        out["within_2sigma"] = float(np.mean(np.abs(fit - r) <= 2 * s))
        out["rho"] = spearman_rho(s, fit - r)
        if reference_std is not None:
            out["within_2sigma_own"] = out["within_2sigma"]
            both = np.hypot(s, np.asarray(reference_std, np.float64)[inner])
            out["within_2sigma"] = float(np.mean(np.abs(fit - r) <= 2 * both))
    return out


def affine_psnr(mean: np.ndarray, reference: np.ndarray) -> float:
    """The PSNR of :func:`real_scores` alone (the inner part, after the affine fit), without its other scores."""
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    r = reference[inner]
    return psnr(affine_fit(np.asarray(mean, np.float64)[inner], r), r)


def tuned_richardson_lucy(pair: RealPair, optics: WidefieldOptics) -> tuple[np.ndarray, str]:
    """Richardson–Lucy with the PSF width and iteration count that score best against the pair's own reference
    (PSNR after the affine fit): the best a classical deconvolution does on this pair, and what was chosen."""
    best: tuple[float, np.ndarray, str] = (-np.inf, pair.reference, "")
    for k in RL_NA_FACTORS:
        o = optics.replace(na=min(optics.na * k, 1.69))
        for it in RL_ITERATIONS:
            est = pair.as_reference_sees(richardson_lucy_sr(pair.input, o, it))
            score = affine_psnr(est, pair.reference)
            if score > best[0]:
                best = (score, est, f"NA {o.na:.2f}, {it} iterations")
    return best[1], best[2]


def evaluate_real_pairs(request: RealEvaluationRequest, options: SamplingOptions) -> list[dict[str, Any]]:
    """One row per pair and method: bicubic, Richardson–Lucy (stated optics; tuned on the pair), the model at its
    own optics and at the stated ones (:func:`~napari_cvdm.inference.optics_match.model_at`)."""
    from ..inference.classical import classical_method
    from ..inference.models import load_model
    from ..inference.optics_match import model_at

    model = load_model(request.model, task="sr")
    rows = []
    for pair in read_real_pairs(request.pairs, request.data):
        stated = model.optics.replace(**pair.optics)
        methods = {
            "bicubic": classical_method("bicubic", pair.optics),
            "Richardson–Lucy (stated optics)": classical_method("richardson-lucy", pair.optics),
            f"{model.name} (its own optics)": model,
            f"{model.name} (stated optics)": model_at(model, pair.optics),
        }
        for label, method in methods.items():
            pred = method.predict_with(pair.input, options)
            mean = pair.as_reference_sees(pred.mean)
            scores = real_scores(mean, pred.std if method.stochastic else None, pair.reference, pair.reference_std)
            rows.append({"pair": pair.name, "method": label, "residual": pred.residual_rms, **scores})
        tuned, chosen = tuned_richardson_lucy(pair, stated)
        label = f"Richardson–Lucy tuned on the pair ({chosen})"
        rows.append({"pair": pair.name, "method": label, "residual": None, **real_scores(tuned, None, pair.reference)})
    return rows


def format_real_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| pair | method | PSNR (affine) | band corr | FRC (px) | ±2σ | ρ | residual |", "|---" * 8 + "|"]
    for r in rows:
        cov = f"{r['within_2sigma']:.1%}" if "within_2sigma" in r else "—"
        if "within_2sigma_own" in r:
            cov += f" ({r['within_2sigma_own']:.1%} with the result's std alone)"
        rho = f"{r['rho']:.2f}" if "rho" in r else "—"
        res = f"{r['residual']:.2f}×" if r["residual"] is not None else "—"
        lines.append(
            f"| {r['pair']} | {r['method']} | {r['psnr']:.2f} | {r['band_corr']:.3f} | {r['frc_px']:.1f} | {cov} | "
            f"{rho} | {res} |"
        )
    return "\n".join(lines)


def write_real_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The rows as JSON (infinite FRC periods as ``null``)."""
    clean = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]
    Path(path).write_text(json.dumps(clean, indent=2))
    return Path(path)
