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

import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from ..data.normalize import Normalization
from ..data.simulate import ABSORPTION_RANGE, NOISE_RANGE, simulate_qpi_pair
from ..metrics import Scores, qpi_scores
from ..physics.background import MIN_BACKGROUND_FRACTION, flat_background_mask, flatten_background
from ..physics.fresnel import QPIOptics
from ..physics.modes import low_mode_variance
from ..physics.noise import noise_sigma
from ..physics.retrieval import RetrievalOptions, Retrieved, fit_margins, retrieve_phase
from ..physics.seams import (
    FRINGE_LIMIT,
    SEAM_CORRELATION_LIMIT,
    SEAM_LIMIT,
    border_fringe_ratio,
    edge_seam_ratio,
    seam_correlation,
)
from ..physics.tie import DEFAULT_TIE_REGULARIZATION, tie_phase, tie_phase_torch
from .base import RESIDUAL_LIMIT, Conditioned, Consistency, Method, MethodNote, Task, interior_rms

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
#: ``s_A`` in the amplitude channel ``(A − 1)/s_A`` of retrieval-conditioned models.
AMPLITUDE_SCALE = 0.1
#: Noise σ the conditioning retrieval weighs the data with (fixed, so training and use agree).
RETRIEVAL_NOISE = 0.01
#: The retrieval's residual (RMS inside a 4-pixel border) per unit of the planes' noise σ: the fit, free at every
#: pixel and in a margin, absorbs part of the noise (√½ ≈ 0.71 for one phase value per pixel of two planes).
#: Measured 0.63–0.81 (median 0.65) on 24 simulated camera crops — cells, textures, photos; σ 0.005–0.03; pure
#: phase and absorbing (``runs/qpi/noise_est.py``).
RESIDUAL_PER_NOISE = 0.65


def retrieval_recipe(optics: QPIOptics, options: RetrievalOptions | None = None) -> dict:
    """The retrieval that conditions a model, as recorded in its normalisation."""
    o = options or RetrievalOptions()
    return {
        "dz_um": optics.dz_um,
        "wavelength_um": optics.wavelength_um,
        "pixel_um": optics.pixel_um,
        "noise": RETRIEVAL_NOISE,
        "iterations": o.iterations,
        "stall_window": o.stall_window,
        "start_weight": o.start_weight,
        "tie_regularization": o.tie_regularization,
        "amplitude_smoothness": o.amplitude_smoothness,
    }


def flat_background_recipe(optics: QPIOptics, options: RetrievalOptions | None = None) -> dict:
    """The retrieval of :func:`retrieval_recipe` with its phase flattened on the background around the specimen
    (:func:`~napari_cvdm.physics.background.flatten_background`) before it conditions a model."""
    return {**retrieval_recipe(optics, options), "flat_background": True}


def _retrieved(planes: np.ndarray, optics: QPIOptics, options: RetrievalOptions | None = None) -> Retrieved:
    """The nonlinear retrieval of one pair ``(2, H, W)`` at (−dz, +dz), as a batch of one."""
    x = torch.from_numpy(np.asarray(planes, np.float32))[None]
    return retrieve_phase(
        x, (-optics.dz_um, optics.dz_um), optics.wavelength_um, optics.pixel_um, RETRIEVAL_NOISE, options
    )


def iterative_phase(planes: np.ndarray, optics: QPIOptics, options: RetrievalOptions | None = None) -> np.ndarray:
    """The nonlinear retrieval's phase (rad, zero mean) of one pair ``(2, H, W)`` at (−dz, +dz) → ``(H, W)``."""
    return _retrieved(planes, optics, options).phase[0].numpy()


def pair_noise(planes: np.ndarray) -> float:
    """σ of the noise of a pair ``(2, H, W)`` (units of the background), estimated from the planes themselves
    and averaged over both (at least 10⁻⁶, so that it can divide)."""
    return max(float(np.mean([noise_sigma(p) for p in planes])), 1e-6)


def retrieval_noise(residual: np.ndarray) -> float:
    """σ of a pair's noise (units of the background) from the iterative retrieval's residual ``(2, H, W)`` in
    units of :data:`RETRIEVAL_NOISE`: what physics leaves unexplained, corrected for the share of the noise the fit
    absorbs (:data:`RESIDUAL_PER_NOISE`). Unlike :func:`pair_noise` it does not take fine structure (photo-like
    phase, caustics) for noise; where the retrieval fails it overestimates the noise."""
    return max(interior_rms(np.asarray(residual)) * RETRIEVAL_NOISE / RESIDUAL_PER_NOISE, 1e-6)


def physics_noise(planes: np.ndarray, optics: QPIOptics) -> float:
    """σ of a pair's noise ``(2, H, W)`` (runs the iterative retrieval; :func:`noise_with_residual`)."""
    return noise_with_residual(planes, _retrieved(planes, optics).residual[0].numpy())


def noise_with_residual(planes: np.ndarray, residual: np.ndarray) -> float:
    """σ of a pair's noise ``(2, H, W)``: the smaller of :func:`pair_noise` (which fine structure inflates) and
    :func:`retrieval_noise` of the retrieval's ``residual`` ``(2, H, W)`` (which a failed fit inflates)."""
    return min(pair_noise(planes), retrieval_noise(residual))


def flat_background_phase(planes: np.ndarray, optics: QPIOptics) -> np.ndarray:
    """The iterative retrieval's phase of one pair ``(2, H, W)`` with its lowest modes fixed by the flat
    background around the specimen (:func:`~napari_cvdm.physics.background.flatten_background`; background at
    zero rad): ``(H, W)``. Unchanged (zero mean), with a :class:`~napari_cvdm.tasks.base.MethodNote` that says why,
    where the image has too little background or no level one."""
    return flatten_retrieved(iterative_phase(planes, optics), planes, optics)


def flatten_retrieved(phase: np.ndarray, planes: np.ndarray, optics: QPIOptics) -> np.ndarray:
    """:func:`flat_background_phase` of an iterative retrieval's phase ``(H, W)`` (rad) already computed for
    ``planes`` ``(2, H, W)``."""
    fit = flatten_background(phase, planes, pair_noise(planes), optics.pixel_um)
    if not fit.applied:
        warnings.warn(
            MethodNote(
                f"flat-background retrieval: {fit.reason}, so the result is the iterative retrieval's phase with its "
                "lowest modes uncorrected (the prior needs cells surrounded by clean medium)"
            ),
            stacklevel=2,
        )
    return fit.phase


def _once_per_input(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` computed once for consecutive calls with the same input array (the same object)."""
    last: list = [None, None]

    def call(x: np.ndarray) -> np.ndarray:
        if last[0] is not x:
            last[:] = [x, fn(x)]
        return last[1]

    return call


def _retrieval_channels(intensities: torch.Tensor, recipe: dict) -> torch.Tensor:
    """Retrieval phase and amplitude ``(B, 2, H, W)`` of intensities ``(B, 2, H, W)`` at (−dz, +dz)."""
    opts = {k: recipe[k] for k in ("iterations", "start_weight", "tie_regularization", "amplitude_smoothness")}
    opts["stall_window"] = recipe.get("stall_window")  # recipes before it ran a fixed count
    dz = recipe["dz_um"]
    r = retrieve_phase(
        intensities.float(),
        (-dz, dz),
        recipe["wavelength_um"],
        recipe["pixel_um"],
        recipe["noise"],
        RetrievalOptions(**opts),
    )
    return torch.stack([r.phase, r.amplitude], dim=1)


def qpi_condition(intensities: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Intensities ``(B, 2, H, W)`` under unit illumination → condition ``(B, C, H, W)``.

    Channels ``(I₋ − 1)/s_I`` and ``(I₊ − 1)/s_I``, plus ``TIE(I₋, I₊)/s_φ`` when ``norm.tie`` is set, or the
    retrieval's ``φ/s_φ`` and ``(A − 1)/s_A`` when ``norm.retrieval`` is set (computed on the whole image given;
    call it per image: the images of a batch would share one L-BFGS run), its phase flattened on the background
    when the recipe says ``flat_background``.
    """
    return with_flat_background(_physics_condition(intensities, norm), intensities, norm)


def _physics_condition(intensities: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """:func:`qpi_condition` before any flat-background step (what the training cache keeps)."""
    x = (intensities - 1.0) / norm.intensity_scale
    if norm.retrieval is not None:
        est = _retrieval_channels(intensities, norm.retrieval).to(x.dtype)
        return torch.cat([x, est[:, :1] / norm.phase_scale, (est[:, 1:] - 1) / AMPLITUDE_SCALE], dim=1)
    if norm.tie is None:
        return x
    dz, lam, px, alpha = norm.tie
    phase = tie_phase_torch(intensities[:, 0], intensities[:, 1], dz, lam, px, alpha).to(x.dtype)
    return torch.cat([x, phase[:, None] / norm.phase_scale], dim=1)


def with_flat_background(cond: torch.Tensor, intensities: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """``cond`` ``(B, 4, H, W)`` of a retrieval-conditioned model with its phase channel (2) replaced, image by
    image, by the flat-background retrieval's (zero mean) when ``norm.retrieval`` says ``flat_background``;
    unchanged otherwise. Images without a usable background keep the retrieval's phase, as
    :func:`flat_background_phase` does."""
    if norm.retrieval is None or not norm.retrieval.get("flat_background"):
        return cond
    out = cond.clone()
    planes = intensities.detach().cpu().numpy()
    for b in range(cond.shape[0]):
        phase = cond[b, 2].detach().cpu().numpy() * norm.phase_scale
        fit = flatten_background(phase, planes[b], pair_noise(planes[b]), norm.retrieval["pixel_um"])
        flat = torch.from_numpy(fit.phase - fit.phase.mean()).to(cond.dtype).to(cond.device)
        out[b, 2] = flat / norm.phase_scale
    return out


def qpi_base(cond: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """What the network's output is added to: the physics channel ``(B, 1, H, W)`` for ``tie_residual`` and
    retrieval models, zeros otherwise (normalised units)."""
    if norm.tie_residual or norm.retrieval is not None:
        return cond[:, 2:3]
    return torch.zeros_like(cond[:, :1])


def qpi_target(phase: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Phase ``(B, 1, H, W)`` → ``(φ − mean φ)/s_φ`` per image."""
    return (phase - phase.mean(dim=(-2, -1), keepdim=True)) / norm.phase_scale


def _zero_mean(values: torch.Tensor) -> torch.Tensor:
    return values - values.mean(dim=(-2, -1), keepdim=True)


def _range_warnings(phase: np.ndarray, max_phase: float) -> list[str]:
    """A warning when the phase spans clearly more than the range the model was trained on."""
    span = float(np.percentile(phase, 99.9) - np.percentile(phase, 0.1))
    if span > 1.5 * max_phase:
        return [
            f"the phase spans {span:.1f} rad, beyond the 0–{max_phase:g} rad expected with these optics (the range "
            "qpi models are trained on): do not trust it (thick or strongly scattering samples, phase wrapping, or "
            "images that are not a defocused pair)"
        ]
    return []


def _dips(phase: np.ndarray, background: np.ndarray) -> bool:
    """Whether the phase ``(H, W)`` looks like dips in a flat background (the objects below their surround):
    judged only where the planes show enough flat ``background`` ``(H, W)`` bool (a sign needs a surround —
    textures and photo-like phase have none), whose median phase is the level; the phase then reaches clearly
    further below it than above."""
    if background.mean() < MIN_BACKGROUND_FRACTION:
        return False
    level = float(np.median(phase[background]))
    above = float(np.percentile(phase, 99.5)) - level
    below = level - float(np.percentile(phase, 0.5))
    return below > 0.3 and below > 1.3 * above


def _plane_order_warnings(physics_phase: np.ndarray, planes: np.ndarray, noise: float) -> list[str]:
    """Swapping the planes (or the sign of dz) negates a pure phase and the data cannot tell; cells are thicker
    than their surround, so dips on a flat background deserve a warning. Judged on the TIE phase of the planes,
    whose damped lowest modes keep the background flat (the iterative retrieval's may tilt on real data), against
    the background the planes show (:func:`~napari_cvdm.physics.background.flat_background_mask` at ``noise``)."""
    if _dips(physics_phase, flat_background_mask(planes, noise)):
        return [
            "the objects come out as dips below their surround: if they should be thicker (cells), the planes "
            "are probably swapped or dz has the wrong sign — the input must be ordered (−dz, +dz), −dz before "
            "the focus along the light"
        ]
    return []


def _wrap_around_evidence(planes: np.ndarray) -> str:
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


class _ConditionCache:
    """Whole-image conditions of training inputs, computed once per input array (the retrieval costs about
    half a second per 128² image); entries die with their arrays. With ``NAPARI_CVDM_CONDITION_CACHE=DIR`` set
    they are also kept in ``DIR`` (one ``.npy`` per input and normalisation, ~260 kB per 128² pair), so that a
    resumed training run does not recompute them."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Normalization, np.ndarray]] = {}

    def get(self, inp: np.ndarray, norm: Normalization) -> np.ndarray:
        key = id(inp)
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is inp and hit[1] == norm:
            return hit[2]
        full = self._computed(np.asarray(inp, np.float32), norm)
        try:
            ref = weakref.ref(inp, lambda _r, k=key: self._entries.pop(k, None))
        except TypeError:  # not weak-referenceable: do not cache
            return full
        self._entries[key] = (ref, norm, full)
        return full

    @staticmethod
    def _computed(inp: np.ndarray, norm: Normalization) -> np.ndarray:
        """The condition of ``inp``; on disk (when asked) before the flat-background step, which is cheap, so that
        models with and without it share the retrievals."""
        x = torch.from_numpy(inp)[None]

        def flatten(full: np.ndarray) -> np.ndarray:
            return with_flat_background(torch.from_numpy(full)[None], x, norm)[0].numpy()

        folder = os.environ.get("NAPARI_CVDM_CONDITION_CACHE")
        path = None
        if folder:
            recorded = norm.to_dict()
            if recorded.get("retrieval"):
                recorded["retrieval"] = {k: v for k, v in recorded["retrieval"].items() if k != "flat_background"}
            digest = hashlib.sha1(inp.tobytes() + json.dumps(recorded, sort_keys=True).encode()).hexdigest()
            path = Path(folder) / f"{digest}.npy"
            if path.exists():
                return flatten(np.load(path))
        full = _physics_condition(x, norm)[0].numpy()
        if path is None:
            return flatten(full)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, full)

        atomic_write(path, save)
        return flatten(full)


class QPITask(Task):
    """Quantitative phase from a defocused pair (see the module docstring)."""

    def __init__(self) -> None:
        self._conditions = _ConditionCache()

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
        return Conditioned(cond, lambda s: _zero_mean((s + base)[:, 0] * norm.phase_scale))

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
        return conds, _zero_mean(y)  # phase is defined up to a constant

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
        if variant not in (None, "pure", "absorbing"):
            raise ValueError(f"qpi variants are 'pure' and 'absorbing', not {variant!r}")
        absorbing = None if variant is None else variant == "absorbing"
        imgs = list(images) if images else None
        pair = simulate_qpi_pair(cls, (size, size), rng, optics, imgs, noise=level, absorbing=absorbing)
        return pair.input, pair.target

    def held_out_conditions(self) -> list[tuple[str, float | None, str | None]]:
        """Three noise levels, pure phase and absorbing objects."""
        return [(f"σ={s:g} {v}", s, v) for s in HELD_OUT_NOISE for v in ("pure", "absorbing")]

    def simulation_ranges(self) -> dict[str, Any]:
        return {"noise_range": list(NOISE_RANGE), "absorption_range": list(ABSORPTION_RANGE), "field": "camera crop"}

    def distribution_warnings(self, plane: np.ndarray, optics: QPIOptics, ranges: dict[str, Any] | None) -> list[str]:
        """Planes from a wrap-around simulation rather than a camera crop (opposite edges that continue each other,
        or defocus fringes crowding two opposite borders), and noise (σ of the planes, in units of the background)
        more than twice the trained maximum."""
        remarks = []
        evidence = _wrap_around_evidence(plane)
        if evidence:
            remarks.append(
                f"{evidence}: the planes look like a simulation with wrap-around (periodic) borders; a camera crops "
                "a larger field, and the model and the physics check assume that: simulate a larger field and crop "
                "it, or pad before propagating"
            )
        noise_range = (ranges or {}).get("noise_range")
        if not noise_range:
            return remarks
        hi = float(noise_range[1])
        sigma = pair_noise(plane)
        if sigma > 2 * hi:  # fine structure inflates that estimate: ask the physics before warning
            sigma = physics_noise(plane, optics)
        if sigma > 2 * hi:
            remarks.append(
                f"the planes are noisier (σ ≈ {sigma:.3f} of the background) than the model was trained on (up to "
                f"{hi:g}): average more frames, check that the planes are divided by the background (not "
                "background-subtracted), or fine-tune on pairs at this noise level"
            )
        return remarks

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
        physics = _retrieved(plane, optics)
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
                f"{rms:.1f}× the noise, physics alone (iterative retrieval) by {ref_rms:.1f}×; check dz, "
                "wavelength and pixel size, that the planes are divided by the background, and compare with the "
                "iterative retrieval (a prior, such as a flat background, can pull the phase away from the planes)"
            )
        remarks += _range_warnings(np.asarray(estimate), optics.max_phase)
        remarks += _plane_order_warnings(tie_phase(plane[0], plane[1], optics.dz_um, lam, px), plane, sigma)
        return Consistency(residual.astype(np.float32), rms, ref_rms, sigma, remarks)

    def baselines(self, optics: QPIOptics | None = None, parameter: float | None = None) -> dict[str, Method]:
        o = optics or QPIOptics()
        alpha = DEFAULT_TIE_REGULARIZATION if parameter is None else float(parameter)
        retrieve = _once_per_input(lambda x: iterative_phase(x, o))  # both retrievals share it
        return {
            f"TIE (alpha={alpha:g}/um^2)": lambda x: (
                tie_phase(x[0], x[1], o.dz_um, o.wavelength_um, o.pixel_um, alpha),
                None,
            ),
            "iterative retrieval": lambda x: (retrieve(x), None),
            "flat-background retrieval": lambda x: (flatten_retrieved(retrieve(x), x, o), None),
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
