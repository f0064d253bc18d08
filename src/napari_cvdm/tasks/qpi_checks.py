"""What a qpi result is checked for beyond its residual: a phase range beyond the model's, objects that come out as
dips (swapped planes), and planes that betray a wrap-around simulation."""

from __future__ import annotations

import numpy as np
import torch

from ..physics.background import MIN_BACKGROUND_FRACTION, flat_background_mask
from ..physics.fresnel import QPIOptics, defocus_stack, phase_object
from ..physics.retrieval import fresnel_margin
from ..physics.seams import (
    FRINGE_LIMIT,
    SEAM_CORRELATION_LIMIT,
    SEAM_LIMIT,
    border_fringe_ratio,
    edge_seam_ratio,
    seam_correlation,
)

__all__ = [
    "fine_absorption_remark",
    "range_warnings",
    "plane_order_warnings",
    "wrap_around_evidence",
    "quick_residual",
    "disagreement",
    "best_explanation",
    "REFERENCE_FIT",
]

#: Two phases disagree when their correlation is below this ...
AGREEMENT_CORRELATION = 0.9
#: ... or their spans (0.5–99.5 percentiles) differ by more than this factor.
AGREEMENT_SPAN = 1.5
#: What the notes call the physics estimate a result is checked beside: the retrieval with the data weighed by the
#: fixed σ of 0.01 — not the ``iterative`` method, which weighs them by the pair's own noise.
REFERENCE_FIT = "the reference retrieval (data weighed by a fixed σ of 0.01)"


def range_warnings(phase: np.ndarray, max_phase: float) -> list[str]:
    """A warning when the phase spans clearly more than the range the model was trained on."""
    span = float(np.percentile(phase, 99.9) - np.percentile(phase, 0.1))
    if span > 1.5 * max_phase:
        return [
            f"the phase spans {span:.1f} rad, beyond the 0–{max_phase:g} rad expected with these optics (the range "
            "qpi models are trained on): do not trust it (thick or strongly scattering samples, phase wrapping, or "
            "images that are not a defocused pair)"
        ]
    return []


def _below_level(phase: np.ndarray, surround: np.ndarray) -> bool:
    """Whether the phase ``(H, W)`` reaches clearly further below the median of its ``surround`` ``(H, W)`` bool
    than above it (dips rather than bumps)."""
    level = float(np.median(phase[surround]))
    above = float(np.percentile(phase, 99.5)) - level
    below = level - float(np.percentile(phase, 0.5))
    return below > 0.3 and below > 1.3 * above


def _dips(phase: np.ndarray, background: np.ndarray) -> bool:
    """Whether the phase ``(H, W)`` looks like dips in a flat background (the objects below their surround):
    judged only where the planes show enough flat ``background`` ``(H, W)`` bool (a sign needs a surround —
    textures and photo-like phase have none), whose median phase is the level."""
    return background.mean() >= MIN_BACKGROUND_FRACTION and _below_level(phase, background)


#: The image border the fallback check takes for the surround: this fraction of the shorter side ...
BORDER_FRACTION = 0.08
#: ... when the phase there is level: its 10–90 % spread at most this fraction of the image's 0.5–99.5 % span
#: (cells in medium: 0.1–0.25; textures, which have no surround, 0.3–0.7).
BORDER_SPREAD = 0.3


def _level_border(phase: np.ndarray) -> np.ndarray | None:
    """The image's border ``(H, W)`` bool where the phase there is level (:data:`BORDER_SPREAD`), else ``None``."""
    border = np.zeros(phase.shape, bool)
    k = max(2, int(BORDER_FRACTION * min(phase.shape)))
    border[:k], border[-k:], border[:, :k], border[:, -k:] = True, True, True, True
    spread = np.subtract(*np.percentile(phase[border], [90, 10]))
    span = np.subtract(*np.percentile(phase, [99.5, 0.5]))
    return border if span > 0 and spread <= BORDER_SPREAD * span else None


def plane_order_warnings(physics_phase: np.ndarray, planes: np.ndarray, noise: float) -> list[str]:
    """Swapping the planes (or the sign of dz) negates a pure phase and the data cannot tell; cells are thicker
    than their surround, so dips on a flat background deserve a warning. Judged on the TIE phase of the planes,
    whose damped lowest modes keep the background flat (the iterative retrieval's may tilt on real data), against
    the background the planes show (:func:`~napari_cvdm.physics.background.flat_background_mask` at ``noise``);
    where they show none (real media carry fringes and dust), against a level image border, more softly."""
    background = flat_background_mask(planes, noise)
    if _dips(physics_phase, background):
        return [
            "the objects come out as dips below their surround: if they should be thicker (cells), the planes "
            "are probably swapped or dz has the wrong sign — the input must be ordered (−dz, +dz), −dz before "
            "the focus along the light"
        ]
    border = None if background.mean() >= MIN_BACKGROUND_FRACTION else _level_border(physics_phase)
    if border is not None and _below_level(physics_phase, border):
        return [
            "the object in the middle comes out below the level at the image's border (no flat background to judge "
            "by): if it is a cell in medium, the planes may be swapped or dz have the wrong sign — the input must be "
            "ordered (−dz, +dz), −dz before the focus along the light"
        ]
    return []


def wrap_around_evidence(planes: np.ndarray) -> str:
    """What in the planes ``(2, H, W)`` says they come from a wrap-around (periodic) simulation, in words; empty
    when nothing does (:mod:`~napari_cvdm.physics.seams`)."""
    if all(edge_seam_ratio(p) >= SEAM_LIMIT for p in planes):  # NaN (no evidence) compares False
        return "the planes' opposite edges continue each other"
    if min(planes.shape[-2:]) < 32:
        return ""
    ratio, mirrored = border_fringe_ratio(planes), seam_correlation(planes)
    if ratio >= FRINGE_LIMIT or mirrored >= SEAM_CORRELATION_LIMIT:
        return (
            f"defocus fringes line two opposite borders ({ratio:.1f}× the inside's contrast, the two borders "
            f"correlated {mirrored:.2f}), as on both sides of a phase step at a periodic seam"
        )
    return ""


def quick_residual(plane: np.ndarray, phase: np.ndarray, optics: QPIOptics) -> np.ndarray:
    """The quick check of a phase ``(H, W)`` (rad) against its pair ``(2, H, W)``: the field of amplitude
    ``√((I₋ + I₊)/2)`` — the TIE's own assumption — and this phase, its border reflected over the Fresnel reach,
    propagated to ±dz, minus the planes: ``(2, H, W)`` in units of the background. One propagation instead of a
    fit (:meth:`~napari_cvdm.tasks.qpi.QPITask.consistency` fits the amplitude and the field outside the image):
    fine for a fast method's result, rougher at the borders and where the sample absorbs in fine detail."""
    planes = np.asarray(plane, np.float64)
    h, w = planes.shape[-2:]
    m = min(fresnel_margin((optics.dz_um,), optics.wavelength_um, optics.pixel_um), h - 1, w - 1)
    amplitude = np.sqrt(np.clip(planes.mean(axis=0), 1e-3, None))
    padded = [np.pad(a, m, mode="reflect") for a in (np.asarray(phase, np.float64), amplitude)]
    field = phase_object(torch.from_numpy(padded[0]), torch.from_numpy(padded[1]))
    dz = (-optics.dz_um, optics.dz_um)
    model = defocus_stack(field, dz, optics.wavelength_um, optics.pixel_um).numpy()[:, m : m + h, m : m + w]
    return model - planes


def _span(phase: np.ndarray) -> float:
    return float(np.percentile(phase, 99.5) - np.percentile(phase, 0.5))


def disagreement(phase: np.ndarray, other: np.ndarray) -> str:
    """How two phases ``(H, W)`` of the same planes disagree, in words (correlation below
    :data:`AGREEMENT_CORRELATION`, or spans more than :data:`AGREEMENT_SPAN` apart); empty when they agree."""
    a, b = np.asarray(phase, np.float64).ravel(), np.asarray(other, np.float64).ravel()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    spans = _span(a), _span(b)
    if corr >= AGREEMENT_CORRELATION and max(spans) <= AGREEMENT_SPAN * max(min(spans), 1e-6):
        return ""
    return f"spans {spans[0]:.1f} rad against {spans[1]:.1f} rad, correlation {corr:.2f}"


def best_explanation(residuals: dict[str, float], differ: str) -> str:
    """The note that says which of several phases of the same planes explains them best: ``residuals`` maps a
    method's name to the RMS of its residual (noise units, the same check for all); ``differ`` says how the
    phases disagree (:func:`disagreement`)."""
    ranked = sorted(residuals.items(), key=lambda kv: kv[1])
    listed = ", ".join(f"{name} {rms:.2f}×" for name, rms in ranked)
    return (
        f"the methods disagree ({differ}); {ranked[0][0]} explains the planes best — residual {listed} the noise, "
        "each phase checked the same way (amplitude and the field outside the image fitted)"
    )


def fine_absorption_remark(ratio: float) -> str:
    """What a pair whose planes' mean has ``ratio`` × the fine texture of their difference
    (:func:`~napari_cvdm.physics.absorption.fine_absorption_ratio`) means for its phase, in words."""
    share = (
        "fine texture and their difference none above the noise"
        if np.isinf(ratio)
        else f"{ratio:.1f}× the fine texture of their difference"
    )
    return (
        f"the planes' mean has {share}: the sample absorbs with fine detail, or its phase is strong enough to focus "
        "light between the planes. A retrieval or a model can put fine absorption into the phase (the TIE, --model "
        "tie, takes the amplitude from the mean and is not misled); the TIE underestimates a strong phase. A plane "
        "near focus constrains the amplitude: give a through-focus stack to --model iterative, which fits every plane"
    )
