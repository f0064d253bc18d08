"""Task ``qpi``: two defocused brightfield images ``(2, H, W)`` at (−dz, +dz) → phase ``(H, W)`` in radians.

Normalisation: intensities under unit illumination map as ``(I − 1)/s_I``, the phase as ``(φ − mean φ)/s_φ``
(phase is defined up to a constant). Two conditioning recipes add a physics estimate:

* TIE (the first bundled model): the TIE phase of the pair (divided by ``s_φ``) as a third channel;
  ``tie_residual`` models learn the correction to it.
* retrieval (new models): the nonlinear retrieval's phase (``/s_φ``) and amplitude (``(A − 1)/0.1``) as channels
  three and four; the network learns ``φ − φ_retrieval``: what physics gets wrong (the lowest spatial
  frequencies, background, absorption). With ``flat_background`` in the recipe the phase channel is the
  flat-background retrieval's (:func:`flat_background_phase`; zero mean): the prior that the medium around cells
  is flat fixes the lowest modes before the network sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..data.metrics import Scores, qpi_scores
from ..data.normalize import Normalization
from ..data.simulate import ABSORPTION_RANGE, NOISE_RANGE, simulate_qpi_pair
from ..data.simulate_qpi import STRONG_ABSORPTION_RANGE, simulate_fine_absorbing_pair
from ..physics.absorption import FINE_ABSORPTION_RATIO, fine_absorption_ratio
from ..physics.fresnel import QPIOptics
from ..physics.modes import low_mode_variance
from ..physics.retrieval import fit_margins
from ..physics.tie import DEFAULT_TIE_REGULARIZATION, tie_phase
from .base import RESIDUAL_LIMIT, Conditioned, Consistency, Method, Task, interior_rms
from .qpi_checks import (
    REFERENCE_FIT,
    best_explanation,
    disagreement,
    fine_absorption_remark,
    plane_order_warnings,
    quick_residual,
    range_warnings,
    wrap_around_evidence,
)
from .qpi_condition import (
    AMPLITUDE_SCALE,
    RETRIEVAL_NOISE,
    ConditionCache,
    fitted_phase,
    flat_background_phase,
    flat_background_recipe,
    flatten_retrieved,
    iterative_phase,
    margin_fit_rms,
    noise_with_residual,
    once_per_input,
    pair_noise,
    physics_noise,
    qpi_base,
    qpi_condition,
    qpi_target,
    retrieval_noise,
    retrieval_recipe,
    retrieved_field,
    with_flat_background,
    zero_mean,
)

__all__ = [
    "QPITask",
    "qpi_condition",
    "qpi_base",
    "qpi_target",
    "retrieval_recipe",
    "flat_background_recipe",
    "with_flat_background",
    "iterative_phase",
    "flat_background_phase",
    "pair_noise",
    "retrieval_noise",
    "physics_noise",
    "noise_with_residual",
    "AMPLITUDE_SCALE",
]

#: Noise levels of the held-out qpi sets (unit illumination).
HELD_OUT_NOISE = (0.005, 0.01, 0.02)


#: The quick check's residual (noise units) beyond which a phase is said not to explain its planes.
QUICK_RESIDUAL_LIMIT = 2.25

#: Held-out variants of the qpi simulator: pure phase, weakly absorbing (amplitude 0.8–1), strongly absorbing
#: (0.4–1, smooth or following the phase), absorbing with fine detail of its own (0.4–1).
QPI_VARIANTS = ("pure", "absorbing", "strongly absorbing", "fine absorption")

#: Share of the training pairs whose absorption has fine detail of its own (amplitude 0.4–1); the rest are pure
#: phase (30 %) or absorb weakly (70 %, amplitude 0.8–1).
FINE_ABSORPTION_SHARE = 0.25


class QPITask(Task):
    """Quantitative phase from a defocused pair (see the module docstring)."""

    def __init__(self) -> None:
        self._conditions = ConditionCache()

    name = "qpi"
    title = "quantitative phase imaging"
    physics_variance_label = "the lowest modes (tilt and curvature across the field), which the planes barely see"
    gain = 1
    input_planes = 2
    optics_class = QPIOptics
    value_units = "rad"
    classes = ("cells", "textures")
    train_size = 128
    eval_size = 128
    simulate_size = 256
    patch_size = 64
    space_to_depth = 1
    baseline_parameter = "TIE alpha (1/um^2)"
    brightfield = True
    variants = QPI_VARIANTS
    ranges_added_later = {"fine_absorption_range": None, "fine_absorption_share": 0.0}

    def _as_planes(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 3 and arr.shape[0] == 2:
            return arr[None]
        if not (arr.ndim == 4 and arr.shape[1] == 2):
            raise ValueError(
                f"qpi expects two planes (2, H, W) ordered (-dz, +dz), or (T, 2, H, W); got shape {arr.shape}"
            )
        return arr

    def pair_shape_error(self, inp: np.ndarray, tgt: np.ndarray) -> str | None:
        if inp.ndim != 3 or inp.shape[0] != 2 or tgt.shape != inp.shape[1:]:
            return f"qpi pairs are (2, H, W) inputs with (H, W) phase targets; got {inp.shape} and {tgt.shape}"
        return None

    def default_normalization(self, optics: QPIOptics | None = None) -> Normalization:
        return Normalization(task=self.name, retrieval=retrieval_recipe(optics or QPIOptics()))

    def cond_channels(self, norm: Normalization) -> int:
        if norm.retrieval is not None:
            return 4
        return 3 if norm.tie is not None else 2

    def condition(self, plane: np.ndarray, norm: Normalization, device: torch.device) -> Conditioned:
        cond = qpi_condition(torch.from_numpy(plane).float()[None].to(device), norm)
        base = qpi_base(cond, norm)
        return Conditioned(cond, lambda s: zero_mean((s + base)[:, 0] * norm.phase_scale))

    def value_unit(self, plane: np.ndarray, norm: Normalization) -> float:
        """Radians per normalised unit (the same for every input)."""
        return float(norm.phase_scale)

    def normalized_patch(
        self, inp: np.ndarray, tgt: np.ndarray, norm: Normalization, y0: int, x0: int, p: int
    ) -> tuple[np.ndarray, np.ndarray]:
        # the condition (with its physics channels) is computed once on the whole image, then cropped
        full = self._conditions.get(inp, norm)
        return full[:, y0 : y0 + p, x0 : x0 + p], tgt[y0 : y0 + p, x0 : x0 + p]

    def collate(
        self, conds: torch.Tensor, targets: torch.Tensor, norm: Normalization
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = qpi_target(targets[:, None], norm) - qpi_base(conds, norm)
        return conds, zero_mean(y)  # phase is defined up to a constant

    def default_classes(self, with_images: bool = False) -> list[str]:
        return [*self.classes, *(["images"] if with_images else [])]

    def simulate(
        self,
        cls: str,
        size: int,
        rng: np.random.Generator,
        optics: QPIOptics | None = None,
        images: Sequence[np.ndarray] | None = None,
        level: float | None = None,
        variant: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if problem := self.variant_error(variant):
            raise ValueError(problem)
        imgs = list(images) if images else None
        if (variant is None and rng.random() < FINE_ABSORPTION_SHARE) or variant == "fine absorption":
            pair = simulate_fine_absorbing_pair(cls, (size, size), rng, optics, imgs, level)
            return pair.input, pair.target
        absorbing = None if variant is None else variant != "pure"
        amplitudes = STRONG_ABSORPTION_RANGE if variant == "strongly absorbing" else ABSORPTION_RANGE
        pair = simulate_qpi_pair(cls, (size, size), rng, optics, imgs, level, absorbing, amplitudes)
        return pair.input, pair.target

    def held_out_conditions(self) -> list[tuple[str, float | None, str | None]]:
        """Three noise levels × pure phase, weakly absorbing (amplitude 0.8–1), strongly absorbing (0.4–1), then the
        three noise levels with absorption of fine detail (0.4–1; listed last, so the sets of the first nine
        conditions stay as they were drawn before it was added)."""
        first = [(f"σ={s:g} {v}", s, v) for s in HELD_OUT_NOISE for v in QPI_VARIANTS[:-1]]
        return first + [(f"σ={s:g} {QPI_VARIANTS[-1]}", s, QPI_VARIANTS[-1]) for s in HELD_OUT_NOISE]

    def simulation_ranges(self) -> dict[str, Any]:
        return {
            "noise_range": list(NOISE_RANGE),
            "absorption_range": list(ABSORPTION_RANGE),
            "fine_absorption_range": list(STRONG_ABSORPTION_RANGE),
            "fine_absorption_share": FINE_ABSORPTION_SHARE,
            "field": "camera crop",
        }

    def distribution_warnings(self, plane: np.ndarray, optics: QPIOptics, ranges: dict[str, Any] | None) -> list[str]:
        """Planes from a wrap-around simulation rather than a camera crop (opposite edges that continue each other,
        or defocus fringes crowding two opposite borders), absorption with fine detail
        (:func:`~napari_cvdm.physics.absorption.fine_absorption_ratio`), and noise (σ of the planes, in units of the
        background) more than twice the trained maximum."""
        remarks = []
        evidence = wrap_around_evidence(plane)
        if evidence:
            remarks.append(
                f"{evidence}: the planes look like a simulation with wrap-around (periodic) borders; a camera crops "
                "a larger field, and the model and the physics check assume that: simulate a larger field and crop "
                "it, or pad before propagating"
            )
        sigma = pair_noise(plane)
        ratio = fine_absorption_ratio(plane, sigma)
        if ratio > FINE_ABSORPTION_RATIO:
            remarks.append(fine_absorption_remark(ratio))
        noise_range = (ranges or {}).get("noise_range")
        if not noise_range:
            return remarks
        hi = float(noise_range[1])
        if sigma > 2 * hi:  # fine structure inflates that estimate: ask the physics before warning
            sigma = physics_noise(plane, optics)
        if sigma > 2 * hi:
            remarks.append(
                f"the planes are noisier (σ ≈ {sigma:.3f} of the background) than the model was trained on (up to "
                f"{hi:g}): average more frames, check that the planes are divided by the background (not "
                "background-subtracted), or fine-tune on pairs at this noise level"
            )
        return remarks

    def display(self, values: np.ndarray) -> tuple[str, tuple[float, float] | None]:
        """Phase in radians on a diverging colormap whose centre (white) is the median phase, the level of the
        medium around cells: thicker than the surround is red, thinner blue; the limits symmetric about it."""
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return "coolwarm", (-1.0, 1.0)
        level = float(np.median(finite))
        reach = float(max(np.percentile(finite, 99.5) - level, level - np.percentile(finite, 0.5), 1e-3))
        return "coolwarm", (level - reach, level + reach)

    def similarity_scale(self, model_optics: QPIOptics, optics: QPIOptics) -> float:
        """The enlargement that gives the pair the model's Fresnel number ``p²/(λ·dz)``: a defocused pair of a thin
        object depends on the optics only through it (paraxial propagation), so the planes enlarged by
        ``(p/p_model)·√(λ_model·dz_model / (λ·dz))`` are those the model's optics would record of the same phase."""
        ratio = (model_optics.wavelength_um * model_optics.dz_um) / (optics.wavelength_um * optics.dz_um)
        return optics.pixel_um / model_optics.pixel_um * ratio**0.5

    def similarity_range(self) -> tuple[float, float]:
        """Enlargements up to twice (a shorter defocus than the model's): further, the defocus blur spans less than
        a pixel. Not shrinking: a pair shrunk to the model's Fresnel number loses detail the retrievals keep
        (docs/models.md)."""
        return (0.95, 2.0)

    def physics_variance(self, plane: np.ndarray, optics: QPIOptics) -> np.ndarray:
        """The variance map of an error in the lowest modes, tilt and curvature across the field, which the planes
        barely constrain (:func:`~napari_cvdm.physics.modes.low_mode_variance`; mean 1 rad², largest at the
        borders and corners): ``(H, W)`` float32 for a pair ``(2, H, W)``. A calibration fits its weight — the
        rms phase error in those modes the samples do not show."""
        return low_mode_variance(np.shape(plane)[-2:])

    def std_smoothing(self, optics: QPIOptics) -> float:
        """The Fresnel length of the defocus, ``√(λ·dz)`` in pixels (3.4 px for the bundled optics): a pair of
        planes at ±dz shows the phase through its curvature over about that distance, so the retrieval's error,
        which lies in the lowest modes, changes no faster. A calibration chooses 1–4× of it by how well the std
        then ranks the error (the bundled qpi's validation pairs: ρ 0.31 unpooled, 0.35 at 3×)."""
        return float(np.sqrt(optics.wavelength_um * optics.dz_um) / optics.pixel_um)

    def consistency(self, plane: np.ndarray, estimate: np.ndarray, optics: QPIOptics) -> Consistency:
        """The phase through the Fresnel model to (−dz, +dz) — the field outside the image and the amplitude
        fitted, the phase inside held fixed (:func:`fit_margins`) — against the planes in units of their noise
        (:func:`noise_with_residual`), beside the nonlinear retrieval's own residual. Warns when the phase
        explains the planes clearly worse than physics does, leaves the trained phase range, or looks like
        swapped planes (dips where cells should be bumps)."""
        x = torch.from_numpy(np.asarray(plane, np.float32))[None]
        phase = torch.from_numpy(np.asarray(estimate, np.float32))[None]
        dz, lam, px = (-optics.dz_um, optics.dz_um), optics.wavelength_um, optics.pixel_um
        physics = retrieved_field(plane, optics)
        sigma = noise_with_residual(plane, physics.residual[0].numpy())
        own = fit_margins(x, phase, dz, lam, px, RETRIEVAL_NOISE)
        ref = fit_margins(x, physics.phase, dz, lam, px, RETRIEVAL_NOISE)  # the same check of the physics estimate
        unit = RETRIEVAL_NOISE / sigma
        residual = own.residual[0].numpy() * unit
        rms, ref_rms = interior_rms(residual), interior_rms(ref.residual[0].numpy() * unit)
        remarks = []
        if rms > RESIDUAL_LIMIT and rms > 1.25 * ref_rms:
            remarks.append(
                f"the phase does not explain the measured planes: propagated to ±dz it differs from them by "
                f"{rms:.1f}× the noise, physics alone ({REFERENCE_FIT}) by {ref_rms:.1f}×; check dz, "
                "wavelength and pixel size, that the planes are divided by the background, and compare with the "
                "iterative retrieval (a prior, such as a flat background, can pull the phase away from the planes)"
            )
        remarks += range_warnings(np.asarray(estimate), optics.max_phase)
        tie = tie_phase(plane[0], plane[1], optics.dz_um, lam, px)
        remarks += plane_order_warnings(tie, plane, sigma)
        differ = disagreement(np.asarray(estimate), tie)
        if differ:  # the same check of the TIE, so that the note can say which explains the planes
            tie_rms = margin_fit_rms(plane, tie, optics) * unit
            found = {"this result": rms, REFERENCE_FIT: ref_rms, "the TIE": tie_rms}
            remarks.append(best_explanation(found, f"this result against the TIE: {differ}"))
        return Consistency(residual.astype(np.float32), rms, ref_rms, sigma, remarks)

    def quick_consistency(self, plane: np.ndarray, estimate: np.ndarray, optics: QPIOptics) -> Consistency:
        """The phase and the mean plane's amplitude propagated once to ±dz (:func:`quick_residual`), against the
        planes in units of their noise (:func:`pair_noise`); warns beyond :data:`QUICK_RESIDUAL_LIMIT` (the check's
        own error at borders and absorption reaches 1.4× for the true phase) and as :meth:`consistency` does on the
        range and the plane order."""
        sigma = pair_noise(plane)
        residual = (quick_residual(plane, estimate, optics) / sigma).astype(np.float32)
        rms = interior_rms(residual)
        remarks = []
        if rms > QUICK_RESIDUAL_LIMIT:
            remarks.append(
                f"the phase explains the planes only to {rms:.1f}× their noise (quick check: one propagation with the "
                "amplitude of the mean plane); compare with --model iterative, whose check fits both"
            )
        remarks += range_warnings(np.asarray(estimate), optics.max_phase)
        lam, px = optics.wavelength_um, optics.pixel_um
        remarks += plane_order_warnings(tie_phase(plane[0], plane[1], optics.dz_um, lam, px), plane, sigma)
        return Consistency(residual, rms, None, sigma, remarks)

    def baselines(self, optics: QPIOptics | None = None, parameter: float | None = None) -> dict[str, Method]:
        o = optics or QPIOptics()
        alpha = DEFAULT_TIE_REGULARIZATION if parameter is None else float(parameter)
        retrieve = once_per_input(lambda x: iterative_phase(x, o))  # both retrievals share it
        return {
            f"TIE (alpha={alpha:g}/um^2)": lambda x: (
                tie_phase(x[0], x[1], o.dz_um, o.wavelength_um, o.pixel_um, alpha),
                None,
            ),
            "iterative retrieval": lambda x: (retrieve(x), None),
            "flat-background retrieval": lambda x: (flatten_retrieved(retrieve(x), x, o), None),
        }

    def camera_methods(
        self, optics: QPIOptics | None = None
    ) -> dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]]:
        """The iterative and flat-background retrievals fitted to every plane given and only to the pixels that carry
        data (:func:`fitted_phase`)."""
        o = optics or QPIOptics()
        return {
            "iterative": lambda st, valid: fitted_phase(st, o, valid),
            "flat-background": lambda st, valid: flatten_retrieved(fitted_phase(st, o, valid), st[[0, -1]], o),
        }

    def tune_baselines(
        self,
        examples,
        optics: QPIOptics | None = None,
        candidates: Sequence[float] = (0.0, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    ) -> tuple[float, dict[float, float]]:
        o = optics or QPIOptics()
        means = {
            a: float(
                np.mean(
                    [
                        self.scores(
                            tie_phase(ex.input[0], ex.input[1], o.dz_um, o.wavelength_um, o.pixel_um, a), ex.target
                        ).psnr
                        for ex in examples
                    ]
                )
            )
            for a in candidates
        }
        return max(means, key=means.get), means

    def scores(self, estimate: np.ndarray, target: np.ndarray) -> Scores:
        return qpi_scores(estimate, target)

    def error(self, estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
        e, t = np.asarray(estimate, np.float64), np.asarray(target, np.float64)
        return (e - e.mean()) - (t - t.mean())

    def output_geometry(
        self, scale: Sequence[float], translate: Sequence[float], plane_axis: bool
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The input's geometry; the defocus axis (``-3``) is dropped when the input carries the planes."""
        s, t = [float(v) for v in scale], [float(v) for v in translate]
        if plane_axis:
            del s[-3], t[-3]
        return tuple(s), tuple(t)
