"""Task ``sr``: widefield fluorescence ``(H, W)`` → SIM-like ``(2H, 2W)`` in the input's units.

Normalisation: each input plane is scaled by its own robust percentiles, ``x̃ = (x − p_lo)/(p_hi − p_lo)``;
the target is scaled with the *input's* affine map so that predictions go back to the input's units. The
condition is ``x̃`` bicubically upsampled to the output grid and the network learns ``ỹ − up(x̃)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.metrics import Scores, affine_fit, sr_scores
from ..data.normalize import FLAT_EPS, Normalization
from ..data.simulate import (
    BACKGROUND_RANGE,
    HAZE_RANGE,
    SCENE_PHOTON_RANGE,
    SR_HELDOUT_STRUCTURES,
    SR_STRUCTURES,
    draw_aberration,
    draw_cytosol,
    draw_sr_conditions,
    simulate_sr_scene,
)
from ..physics.cutoff import estimate_cutoff
from ..physics.noise import band_noise_level_curve, band_noise_level_function, floor_fraction, photon_level
from ..physics.widefield import (
    DEFAULT_RL_ITERATIONS,
    WidefieldOptics,
    bicubic_upsample,
    out_of_band_ratio,
    richardson_lucy_sr,
    widefield_from_target,
)
from .base import RESIDUAL_LIMIT, Conditioned, Consistency, Method, Task, interior_rms

__all__ = ["SRTask", "sr_affine", "sr_condition", "UNDERSAMPLED_RATIO", "BRIGHTNESS_FACTOR"]

#: An out-of-band ratio (:func:`out_of_band_ratio`) above this: the image carries detail its optics cannot pass.
#: Correctly sampled simulations give 0.85–1.26 (every class, 5–3000 photons, 128²), 2× binned ones 1.8–83 from
#: 100 photons on (runs/ood/probe.py).
UNDERSAMPLED_RATIO = 1.6

#: Brightness further than this factor outside the trained photon range is warned about.
BRIGHTNESS_FACTOR = 2.5

#: Inputs smaller than this (pixels) are too small for the spectral and brightness checks.
_CHECK_SIDE = 48

#: An image with more of its pixels at its lowest value than this share was clipped at a floor.
CLIPPED_FLOOR = 0.05
#: The optics an sr model is meant to cover: camera pixel at the sample (µm), NA, emission (µm).
OPTICS_RANGE = {"pixel_um": (0.04, 0.13), "na": (0.8, 1.49), "wavelength_um": (0.45, 0.68)}


def sr_affine(image: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """``(offset, scale)`` of one input such that ``(x − offset)/scale`` is in about [0, 1].

    A flat image gets ``scale = 1`` (no division by zero).
    """
    lo, hi = np.percentile(np.asarray(image, dtype=np.float64), [norm.low_percentile, norm.high_percentile])
    scale = float(hi - lo)
    return float(lo), scale if scale > FLAT_EPS * max(1.0, abs(float(hi))) else 1.0


def sr_condition(x_norm: torch.Tensor, gain: int = 2) -> torch.Tensor:
    """Normalised input ``(B, 1, h, w)`` → condition on the output grid ``(B, 1, gain·h, gain·w)`` (bicubic)."""
    return F.interpolate(x_norm, scale_factor=gain, mode="bicubic", align_corners=False)


class SRTask(Task):
    """Super-resolution of widefield fluorescence images (see the module docstring)."""

    name = "sr"
    title = "super-resolution"
    variants = ("aberrated", "cytosol")
    physics_variance_label = "the camera's photon and read noise"
    gain = 2
    input_planes = 1
    optics_class = WidefieldOptics
    value_units = "input units"
    classes = tuple(SR_STRUCTURES)
    test_only_classes = tuple(SR_HELDOUT_STRUCTURES)
    train_size = 64
    eval_size = 64
    simulate_size = 128
    patch_size = 48
    space_to_depth = 2
    baseline_parameter = "Richardson-Lucy iterations"
    reads_optics_off_image = True

    def _as_planes(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim != 3:
            raise ValueError(
                f"sr expects one plane (H, W) or a stack (Z or T, H, W); got shape {arr.shape}. "
                "RGB or multi-channel images: pick one channel first"
            )
        if arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
            raise ValueError(f"shape {arr.shape} looks like an RGB image; sr expects a single-channel widefield image")
        return arr

    def pair_shape_error(self, inp: np.ndarray, tgt: np.ndarray) -> str | None:
        if inp.ndim != 2 or tgt.ndim != 2:
            return f"sr pairs are (H, W) inputs with (2H, 2W) targets; got {inp.shape} and {tgt.shape}"
        want = (self.gain * inp.shape[0], self.gain * inp.shape[1])
        if tgt.shape != want:
            return f"the target must be twice the input's size: input {inp.shape} needs target {want}, got {tgt.shape}"
        return None

    def default_normalization(self, optics: WidefieldOptics | None = None) -> Normalization:
        return Normalization(task=self.name)

    def cond_channels(self, norm: Normalization) -> int:
        return 1

    def condition(self, plane: np.ndarray, norm: Normalization, device: torch.device) -> Conditioned:
        offset, scale = sr_affine(plane, norm)
        remarks = []
        if scale == 1.0 and float(np.ptp(plane)) < 1e-6:
            remarks.append("the image is flat (constant): the reconstruction carries no structure")
        cond = sr_condition(torch.from_numpy((plane - offset) / scale).float()[None, None].to(device), self.gain)
        return Conditioned(cond, lambda s: ((s + cond) * scale + offset)[:, 0], remarks)

    def value_unit(self, plane: np.ndarray, norm: Normalization) -> float:
        """The input's robust intensity range (:func:`sr_affine`): one normalised unit in input units."""
        return sr_affine(plane, norm)[1]

    def normalized_patch(
        self, inp: np.ndarray, tgt: np.ndarray, norm: Normalization, y0: int, x0: int, p: int
    ) -> tuple[np.ndarray, np.ndarray]:
        offset, scale = sr_affine(inp, norm)
        g = self.gain
        return (
            (inp[y0 : y0 + p, x0 : x0 + p] - offset) / scale,
            (tgt[g * y0 : g * (y0 + p), g * x0 : g * (x0 + p)] - offset) / scale,
        )

    def collate(
        self, conds: torch.Tensor, targets: torch.Tensor, norm: Normalization
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = sr_condition(conds[:, None], self.gain)
        return x, targets[:, None] - x

    def simulate(
        self,
        cls: str,
        size: int,
        rng: np.random.Generator,
        optics: WidefieldOptics | None = None,
        images: Sequence[np.ndarray] | None = None,
        level: float | None = None,
        variant: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A scene under drawn conditions (:func:`draw_sr_conditions`: photons unless ``level`` fixes them,
        background, out-of-focus haze); the ``aberrated`` variant is seen through a defocused, aberrated pupil
        (:func:`draw_aberration`), the ``cytosol`` variant lies inside cells whose cytoplasm glows
        (:func:`draw_cytosol`)."""
        if problem := self.variant_error(variant):
            raise ValueError(problem)
        conditions = draw_sr_conditions(rng, level)
        if variant == "aberrated":
            conditions = draw_aberration(conditions, rng, optics or self.default_optics())
        elif variant == "cytosol":
            conditions = draw_cytosol(conditions, rng)
        pair = simulate_sr_scene(cls, (size, size), conditions, rng, optics)
        return pair.input, pair.target

    def simulation_ranges(self) -> dict[str, Any]:
        return {
            "photon_range": list(SCENE_PHOTON_RANGE),
            "background_range": list(BACKGROUND_RANGE),
            "haze_range": list(HAZE_RANGE),
        }

    def consistency(self, plane: np.ndarray, estimate: np.ndarray, optics: WidefieldOptics) -> Consistency:
        """The reconstruction through :func:`widefield_from_target`, matched to the input by a least-squares
        gain and offset (the background), against the input in units of its noise at the model's intensity
        (:meth:`noise_variance_at`: the image's own noise-level curve, which a camera offset does not inflate)."""
        x = np.asarray(plane, np.float64)
        model = affine_fit(widefield_from_target(estimate, optics), x)
        var = self.noise_variance_at(x, model, optics)
        residual = (model - x) / np.sqrt(var)
        rms = interior_rms(residual)
        remarks = []
        if rms > RESIDUAL_LIMIT:
            remarks.append(
                f"the reconstruction, blurred and binned back to the camera, differs from the input by "
                f"{rms:.1f}× the noise (about 1 is expected): it does not explain this image; check the optics "
                f"(NA, wavelength, pixel size) or fine-tune on your own pairs"
            )
        return Consistency(residual.astype(np.float32), rms, None, float(np.sqrt(np.median(var))), remarks)

    def noise_variance_at(self, plane: np.ndarray, intensity: np.ndarray, optics: WidefieldOptics) -> np.ndarray:
        """The noise variance of ``plane`` (input units²) at each value of ``intensity`` (input units, any shape:
        the expected intensity of each pixel), read off the image's noise-level curve measured beyond the optical
        cut-off (:func:`~napari_cvdm.physics.noise.band_noise_level_curve`; constant beyond its ends); at least
        10⁻¹² so that it can divide."""
        means, variances = band_noise_level_curve(plane, min(optics.cutoff_cycles_per_pixel, 0.44))
        return np.maximum(np.interp(intensity, means, variances), 1e-12)

    def noise_model(self, plane: np.ndarray, optics: WidefieldOptics) -> tuple[float, float]:
        """``(a, b)`` of the input's noise variance ``a·x + b`` (Poisson gain and read noise, input units),
        measured beyond the optical cut-off where only noise lies (:func:`band_noise_level_function`)."""
        return band_noise_level_function(plane, min(optics.cutoff_cycles_per_pixel, 0.44))

    def physics_variance(self, plane: np.ndarray, optics: WidefieldOptics) -> np.ndarray:
        """The input's noise variance at each input pixel's expected intensity ``x̄`` (the input averaged over half
        the PSF's σ, not its noisy draw), read off the image's own noise-level curve
        (:func:`~napari_cvdm.physics.noise.band_noise_level_curve`, measured beyond the optical cut-off; a camera
        offset is no photon signal there), given to the ``gain × gain`` output pixels it covers and averaged over
        the target PSF's σ (:meth:`std_smoothing`): ``(gain·H, gain·W)`` float32, input units² (the output's).
        Where the camera counted more photons the reconstruction is less certain in absolute terms; a sample
        spread does not show that by itself."""
        from scipy.ndimage import gaussian_filter

        x = np.asarray(plane, np.float64)
        var = self.noise_variance_at(x, gaussian_filter(x, optics.psf_sigma_px / 2, mode="reflect"), optics)
        g = self.gain
        up = np.repeat(np.repeat(var, g, axis=0), g, axis=1).astype(np.float32)
        gaussian_filter(up, self.std_smoothing(optics), output=up, mode="reflect")
        return up

    def distribution_warnings(
        self, plane: np.ndarray, optics: WidefieldOptics, ranges: dict[str, Any] | None
    ) -> list[str]:
        """A background clipped at a floor, undersampling (detail beyond the optical cut-off: pixels larger than the
        model's) and brightness (photons at the brightest structures, from the noise's Poisson gain) outside the
        trained range."""
        x = np.asarray(plane, np.float64)
        share = floor_fraction(x)  # a constant image is all floor: it is told that it is flat instead
        remarks = [clipped_remark(share)] if CLIPPED_FLOOR < share < 1.0 else []
        cutoff = optics.cutoff_cycles_per_pixel
        if min(x.shape) < _CHECK_SIDE or cutoff >= 0.4:
            return remarks
        ratio = out_of_band_ratio(x, cutoff)
        if ratio > UNDERSAMPLED_RATIO:
            remarks.append(self.undersampling_remark(optics))
            return remarks  # the noise above the cut-off holds signal: no brightness estimate
        photon_range = (ranges or {}).get("photon_range")
        if photon_range:
            lo, hi = (float(v) for v in photon_range)
            photons = photon_level(x, self.noise_model(x, optics)[0])
            if photons < lo / BRIGHTNESS_FACTOR or photons > hi * BRIGHTNESS_FACTOR:
                held = (
                    f"about {photons:.0f} photons per pixel"
                    if np.isfinite(photons)
                    else "far more photons per pixel than their noise would allow"
                )
                remarks.append(
                    f"the brightest structures hold {held} (judged from the image's noise), the model was trained "
                    f"on {lo:g}–{hi:g}: "
                    + (
                        "average or sum frames for more signal, or fine-tune on pairs at this signal level"
                        if photons < lo
                        else "fine-tune on pairs at this signal level (a background-subtracted or rescaled "
                        "image also looks like this: give the camera's raw counts)"
                    )
                )
        return remarks

    def similarity_scale(self, model_optics: WidefieldOptics, optics: WidefieldOptics) -> float:
        """The ratio of the OTF cut-offs in cycles per pixel, ``(2·NA/λ·p)`` of ``optics`` over the model's: an
        image enlarged by it has the model's PSF width in pixels (the shape of a widefield image depends on the
        optics only through it)."""
        return optics.cutoff_cycles_per_pixel / model_optics.cutoff_cycles_per_pixel

    def estimated_optics(self, plane: np.ndarray, optics: WidefieldOptics) -> WidefieldOptics:
        """``optics`` with the cut-off read off the image's spectrum (:func:`~napari_cvdm.physics.cutoff.
        estimate_cutoff`): the NA that gives it at the stated wavelength and pixel (the wavelength instead where
        that NA is not one of an objective's)."""
        cutoff = estimate_cutoff(plane)
        na = cutoff * optics.wavelength_um / (2 * optics.pixel_um)
        if 0.1 <= na <= 1.6:
            return optics.replace(na=na)
        return optics.replace(wavelength_um=2 * optics.na * optics.pixel_um / cutoff)

    def optics_disagreement(self, plane: np.ndarray, optics: WidefieldOptics) -> str | None:
        """A warning when the cut-off read off the image is more than 1.3× off the one ``optics`` state (judged only
        where the image is large enough and the stated cut-off lies below 0.45 cycles per pixel, where the spectrum
        still shows it)."""
        if min(plane.shape[-2:]) < 64 or optics.cutoff_cycles_per_pixel >= 0.45:
            return None
        found, stated = estimate_cutoff(plane), optics.cutoff_cycles_per_pixel
        if max(found / stated, stated / found) <= 1.3:
            return None
        return (
            f"the image's spectrum ends at {found:.2f} cycles per pixel, the stated optics (NA {optics.na:g}, "
            f"{optics.wavelength_um * 1000:.0f} nm, {optics.pixel_um * 1000:.1f} nm pixels) at {stated:.2f}: check "
            "them (a binned camera, another objective, or an out-of-focus image)"
        )

    def draw_optics(self, rng: np.random.Generator, base: WidefieldOptics) -> WidefieldOptics:
        """Widefield optics over :data:`OPTICS_RANGE` (pixel log-uniform, NA and emission uniform), redrawn until
        the camera samples the PSF (cut-off ≤ 0.5 cycles per pixel); the camera's noise as in ``base``."""
        while True:
            pixel = float(np.exp(rng.uniform(*np.log(OPTICS_RANGE["pixel_um"]))))
            optics = base.replace(
                pixel_um=pixel, na=float(rng.uniform(*OPTICS_RANGE["na"])),
                wavelength_um=float(rng.uniform(*OPTICS_RANGE["wavelength_um"])),
            )  # fmt: skip
            if optics.cutoff_cycles_per_pixel <= 0.5:
                return optics

    def similarity_range(self) -> tuple[float, float]:
        """Enlargements from 0.3 (40 nm pixels, NA 0.8, 680 nm against the bundled optics) to 1.6 (a camera
        sampling at Nyquist, cut-off 0.5 cycles per pixel): beyond that the camera undersamples and no resampling
        brings back what it aliased."""
        return (0.3, 1.6)

    def undersampling_remark(self, optics: WidefieldOptics) -> str:
        """The warning for an image with detail beyond the cut-off of ``optics`` (those of the run: pixels larger
        than they say)."""
        return (
            f"the image has detail beyond what the optics of this run pass (NA {optics.na:g}, "
            f"{optics.wavelength_um * 1000:.0f} nm emission, {optics.pixel_um * 1000:.1f} nm pixels): its "
            f"pixels are probably larger than {optics.pixel_um * 1000:.1f} nm (binned, or a lower "
            "magnification). Give its pixel size (--pixel-size, with the NA and wavelength if you know them): "
            "the model then runs at them"
        )

    def baselines(self, optics: WidefieldOptics | None = None, parameter: float | None = None) -> dict[str, Method]:
        optics = optics or WidefieldOptics()
        iterations = int(parameter or DEFAULT_RL_ITERATIONS)
        return {
            "bicubic": lambda x: (bicubic_upsample(x, optics.gain), None),
            f"richardson-lucy ({iterations} it.)": lambda x: (richardson_lucy_sr(x, optics, iterations), None),
        }

    def tune_baselines(
        self, examples, optics: WidefieldOptics | None = None, candidates: Sequence[int] = (3, 5, 10, 20, 40, 80)
    ) -> tuple[float, dict[float, float]]:
        optics = optics or WidefieldOptics()
        means = {
            it: float(
                np.mean([self.scores(richardson_lucy_sr(ex.input, optics, it), ex.target).psnr for ex in examples])
            )
            for it in candidates
        }
        return max(means, key=means.get), means

    def scores(self, estimate: np.ndarray, target: np.ndarray) -> Scores:
        return sr_scores(estimate, target)

    def error(self, estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``estimate − target`` less its mean: a widefield image does not fix the level of a uniform
        background (it cannot be told from out-of-focus haze), so, as the scores' intensity fit, the error and
        the std are about the structure above that level (the bundled model's raw error has offsets of up to
        20× its structural error)."""
        d = np.asarray(estimate, np.float64) - np.asarray(target, np.float64)
        return d - d.mean()

    def std_smoothing(self, optics: WidefieldOptics) -> float:
        """σ of the Gaussian that approximates the target's (SIM-like, NA × gain) Airy PSF, in output pixels:
        ``0.21·λ/(NA·gain)`` over ``pixel/gain``, the same number as :attr:`WidefieldOptics.psf_sigma_px` (1.35 px
        for the bundled optics)."""
        return optics.psf_sigma_px

    def output_geometry(
        self, scale: Sequence[float], translate: Sequence[float], plane_axis: bool
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The last two axes at ``1/gain`` of the pixel size, shifted so that the output overlays the input:
        input pixel ``i`` covers ``[i − ½, i + ½]``, so output pixels ``2i`` and ``2i + 1`` are centred at
        ``i ∓ ¼`` (napari places pixel ``i`` at ``translate + i·scale``)."""
        s, t = [float(v) for v in scale], [float(v) for v in translate]
        for ax in (-2, -1):
            t[ax] -= s[ax] * (self.gain - 1) / (2 * self.gain)
            s[ax] /= self.gain
        return tuple(s), tuple(t)


def clipped_remark(share: float) -> str:
    """What an image with ``share`` of its pixels at its lowest value is told."""
    return (
        f"{100 * share:.0f} % of the pixels sit at the image's lowest value: it looks background-subtracted or clipped "
        "at a floor, which the model never saw (on such simulated scenes its results lose detail and its std covers "
        "less of the error); give the camera's image with its background and offset"
    )
