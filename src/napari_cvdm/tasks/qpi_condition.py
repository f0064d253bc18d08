"""What a qpi network is given and learns: the physics estimates of the phase that condition it (TIE, or the
nonlinear retrieval's phase and amplitude, optionally with the flat-background prior), their recipes as recorded in
a model's normalisation, the noise the planes carry, and the target in network units."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..data._files import atomic_write
from ..data.normalize import Normalization
from ..physics.background import flatten_background
from ..physics.fresnel import QPIOptics
from ..physics.noise import pair_noise
from ..physics.retrieval import RetrievalOptions, Retrieved, fit_margins, retrieve_phase
from ..physics.tie import tie_phase_torch
from .qpi_recipes import FIT_NOISE_FLOOR, PLANES_NOISE, RESIDUAL_PER_NOISE, fit_noise, retrieval_channels
from .records import RESIDUAL_LIMIT, MethodNote, interior_rms

__all__ = [
    "qpi_condition",
    "qpi_base",
    "qpi_target",
    "retrieval_recipe",
    "flat_background_recipe",
    "with_flat_background",
    "iterative_phase",
    "flat_background_phase",
    "flatten_retrieved",
    "pair_noise",
    "retrieval_noise",
    "physics_noise",
    "noise_with_residual",
    "AMPLITUDE_SCALE",
    "RETRIEVAL_NOISE",
    "RESIDUAL_PER_NOISE",
    "ConditionCache",
    "zero_mean",
    "retrieved_field",
    "weighted_retrieval",
    "fit_noise",
    "FIT_NOISE_FLOOR",
    "PLANES_NOISE",
    "once_per_input",
    "tie_if_better",
    "fitted_phase",
    "margin_fit_rms",
]


#: ``s_A`` in the amplitude channel ``(A − 1)/s_A`` of retrieval-conditioned models.
AMPLITUDE_SCALE = 0.1


#: Noise σ the conditioning retrieval weighs the data with (fixed, so training and use agree).
RETRIEVAL_NOISE = 0.01


def retrieval_recipe(optics: QPIOptics, options: RetrievalOptions | None = None) -> dict:
    """The retrieval that conditions a model, as recorded in its normalisation (each pair weighed by its own
    noise, :data:`PLANES_NOISE`)."""
    o = options or RetrievalOptions()
    return {
        "dz_um": optics.dz_um,
        "wavelength_um": optics.wavelength_um,
        "pixel_um": optics.pixel_um,
        "noise": PLANES_NOISE,
        "iterations": o.iterations,
        "stall_window": o.stall_window,
        "stall_start": o.stall_start,
        "start_weight": o.start_weight,
        "tie_regularization": o.tie_regularization,
        "amplitude_smoothness": o.amplitude_smoothness,
    }


def flat_background_recipe(optics: QPIOptics, options: RetrievalOptions | None = None) -> dict:
    """The retrieval of :func:`retrieval_recipe` with its phase flattened on the background around the specimen
    (:func:`~napari_cvdm.physics.background.flatten_background`) before it conditions a model."""
    return {**retrieval_recipe(optics, options), "flat_background": True}


def retrieved_field(planes: np.ndarray, optics: QPIOptics, options: RetrievalOptions | None = None) -> Retrieved:
    """The nonlinear retrieval of one pair ``(2, H, W)`` at (−dz, +dz), as a batch of one, the data weighed by the
    fixed :data:`RETRIEVAL_NOISE`: the physics check whose residual measures the noise (:func:`retrieval_noise`)."""
    x = torch.from_numpy(np.asarray(planes, np.float32))[None]
    return retrieve_phase(
        x, (-optics.dz_um, optics.dz_um), optics.wavelength_um, optics.pixel_um, RETRIEVAL_NOISE, options
    )


def weighted_retrieval(planes: np.ndarray, optics: QPIOptics, options: RetrievalOptions | None = None) -> Retrieved:
    """The nonlinear retrieval of one pair ``(2, H, W)`` at (−dz, +dz) with the data weighed by the pair's own
    noise (:func:`fit_noise`): the phase estimate. Its residual is in units of that σ."""
    x = torch.from_numpy(np.asarray(planes, np.float32))[None]
    dz = (-optics.dz_um, optics.dz_um)
    return retrieve_phase(x, dz, optics.wavelength_um, optics.pixel_um, fit_noise(planes), options)


def iterative_phase(planes: np.ndarray, optics: QPIOptics, options: RetrievalOptions | None = None) -> np.ndarray:
    """The nonlinear retrieval's phase (rad, zero mean) of one pair ``(2, H, W)`` at (−dz, +dz) → ``(H, W)``
    (:func:`weighted_retrieval`), or the TIE's where that explains the planes better (:func:`tie_if_better`)."""
    return tie_if_better(planes, optics, weighted_retrieval(planes, optics, options))


def fitted_phase(planes: np.ndarray, optics: QPIOptics, valid: np.ndarray | None = None) -> np.ndarray:
    """The nonlinear retrieval's phase (rad, zero mean) ``(H, W)`` fitted to every plane of a pair or a
    through-focus stack ``(N, H, W)`` (unit illumination, evenly spaced from −dz to +dz) and only to the pixels
    ``valid`` ``(N, H, W)`` marks (``None``: all; saturated pixels say nothing of the phase), started from the TIE
    of the outer pair and the data weighed by that pair's noise. The planes between the outer two constrain the
    amplitude and the phase further than the pair alone."""
    st = np.asarray(planes, np.float32)
    dz = [float(z) for z in np.linspace(-optics.dz_um, optics.dz_um, st.shape[0])]
    x = torch.from_numpy(st)[None]
    mask = None if valid is None else torch.from_numpy(np.asarray(valid, bool))
    r = retrieve_phase(x, dz, optics.wavelength_um, optics.pixel_um, fit_noise(st[[0, -1]]), valid=mask)
    return r.phase[0].numpy()


def tie_if_better(planes: np.ndarray, optics: QPIOptics, retrieved: Retrieved) -> np.ndarray:
    """The retrieval's phase ``(H, W)``, or — when its fit leaves more than :data:`RESIDUAL_LIMIT` noise units and
    the TIE's phase, checked the same way (:func:`fit_margins`), explains the planes ``(2, H, W)`` better — the
    TIE's, with a :class:`~napari_cvdm.tasks.base.MethodNote` that says why. Strong or finely detailed absorption can
    throw the fit into large wrong phases (−15 dB where TIE gave 19 dB); the TIE, linear in the intensity
    difference, is not thrown."""
    phase = retrieved.phase[0].numpy()
    if interior_rms(retrieved.residual[0].numpy()) <= RESIDUAL_LIMIT:
        return phase
    pair = np.asarray(planes, np.float64)
    tie = tie_phase_torch(*torch.from_numpy(pair), optics.dz_um, optics.wavelength_um, optics.pixel_um).numpy()
    own, linear = margin_fit_rms(planes, phase, optics), margin_fit_rms(planes, tie, optics)
    if linear >= own:
        return phase
    unit = RETRIEVAL_NOISE / pair_noise(planes)
    warnings.warn(
        MethodNote(
            f"iterative retrieval: its phase explains the planes worse than the TIE's ({own * unit:.1f}× against "
            f"{linear * unit:.1f}× the noise), so the result is the TIE phase (strong or finely detailed absorption "
            "can throw the fit off)"
        ),
        stacklevel=2,
    )
    return tie.astype(np.float32)


def margin_fit_rms(planes: np.ndarray, phase: np.ndarray, optics: QPIOptics) -> float:
    """How well a phase ``(H, W)`` (rad) explains its pair ``(2, H, W)``: the RMS inside the image of the residual
    once the field outside the image and the amplitude are fitted to it (:func:`fit_margins`), in units of
    :data:`RETRIEVAL_NOISE` — the one check every phase of a pair gets when methods are compared."""
    x = torch.from_numpy(np.asarray(planes, np.float32))[None]
    ph = torch.from_numpy(np.asarray(phase, np.float32))[None]
    dz = (-optics.dz_um, optics.dz_um)
    fit = fit_margins(x, ph, dz, optics.wavelength_um, optics.pixel_um, RETRIEVAL_NOISE)
    return interior_rms(fit.residual[0].numpy())


def retrieval_noise(residual: np.ndarray) -> float:
    """σ of a pair's noise (units of the background) from the iterative retrieval's residual ``(2, H, W)`` in
    units of :data:`RETRIEVAL_NOISE`: what physics leaves unexplained, corrected for the share of the noise the fit
    absorbs (:data:`RESIDUAL_PER_NOISE`). Unlike :func:`pair_noise` it does not take fine structure (photo-like
    phase, caustics) for noise; where the retrieval fails it overestimates the noise."""
    return max(interior_rms(np.asarray(residual)) * RETRIEVAL_NOISE / RESIDUAL_PER_NOISE, 1e-6)


def physics_noise(planes: np.ndarray, optics: QPIOptics) -> float:
    """σ of a pair's noise ``(2, H, W)`` (runs the iterative retrieval; :func:`noise_with_residual`)."""
    return noise_with_residual(planes, retrieved_field(planes, optics).residual[0].numpy())


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


def once_per_input(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` computed once for consecutive calls with the same input array (the same object)."""
    last: list = [None, None]

    def call(x: np.ndarray) -> np.ndarray:
        if last[0] is not x:
            last[:] = [x, fn(x)]
        return last[1]

    return call


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
        est = retrieval_channels(intensities, norm.retrieval).to(x.dtype)
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


def zero_mean(values: torch.Tensor) -> torch.Tensor:
    return values - values.mean(dim=(-2, -1), keepdim=True)


class ConditionCache:
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
