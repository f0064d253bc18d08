"""How much an sr model loses when the microscope's transfer is a measured one, not the ideal Airy pattern.

    python docs/experiments/sr_measured_otf.py MODEL OTF.tif [N_PER_CLASS]

OTF.tif: ../shared/data/real-pairs/rdlsim_otf488_radial_re_im.tif (the radial OTF shipped with the real TIRF-SIM
frames, 0.0312 µm⁻¹ per sample). Scenes of microtubules, ER and CCPs (96² inputs, 150 photons, background 25 %, no
haze: TIRF-like) at those frames' optics (62.6 nm pixels, NA 1.35, 520 nm) are imaged twice from the same
fluorophores: through the ideal Airy pattern (what the simulator draws) and through the measured OTF (the Airy
image's spectrum multiplied by measured/ideal). The target is the ideal one (Airy at 2·NA) for both. Prints PSNR
after an affine fit (inner part) for bicubic, Richardson–Lucy tuned per image (NA ×0.9–1.1, 5–40 iterations:
generous) and the model mapped onto the optics (8 samples, 8 steps). fp32: set NAPARI_CVDM_FP32=1.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import tifffile
from scipy.signal import fftconvolve

from napari_cvdm.data.metrics import affine_fit, psnr
from napari_cvdm.data.simulate import FINE
from napari_cvdm.data.structures import draw_structure
from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.optics_match import model_at
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.physics.widefield import WidefieldOptics, airy_psf, bicubic_upsample, camera_noise, richardson_lucy_sr

OPTICS = WidefieldOptics(na=1.35, wavelength_um=0.52, pixel_um=0.0626)
OTF_STEP = 0.0312  # µm⁻¹ per sample of the radial OTF
SIDE, BORDER, PHOTONS, BACKGROUND = 96, 8, 150.0, 0.25
CLASSES = ("microtubules", "er", "ccps")


def binned(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum over ``factor × factor`` blocks."""
    h, w = image.shape
    return image.reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))


def measured_over_ideal(otf_path: str, shape: tuple[int, int]) -> np.ndarray:
    """The factor (``rfft2`` layout, camera grid) that turns the ideal widefield image into the measured one."""
    re = tifffile.imread(otf_path)[0].astype(np.float64)
    re = np.clip(re / re[0], 0, None)
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(fy, fx) / OPTICS.pixel_um
    measured = np.interp(k, np.arange(re.size) * OTF_STEP, re, right=0.0)
    pad = np.zeros(shape)
    psf = airy_psf(OPTICS.na, OPTICS.wavelength_um, OPTICS.pixel_um)
    pad[: psf.shape[0], : psf.shape[1]] = psf
    ideal = np.fft.rfft2(np.roll(pad, (-(psf.shape[0] // 2),) * 2, axis=(0, 1))).real
    factor = measured * ideal / (ideal**2 + 1e-4)
    factor[0, 0] = 1.0
    return factor


def scene(cls: str, otf_path: str, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The two camera images (ideal, measured) of one field, and its ideal target."""
    fine = OPTICS.pixel_um / FINE
    m = int(math.ceil(1.0 / OPTICS.pixel_um))
    density = draw_structure(cls, ((SIDE + 2 * m) * FINE,) * 2, fine, rng)
    wide = binned(fftconvolve(density, airy_psf(OPTICS.na, OPTICS.wavelength_um, fine, oversample=1), "same"), FINE)
    sharp = fftconvolve(density, airy_psf(2 * OPTICS.na, OPTICS.wavelength_um, fine, oversample=1), "same")
    sharp = binned(sharp, FINE // 2)[2 * m : 2 * (m + SIDE), 2 * m : 2 * (m + SIDE)]
    blurred = np.fft.irfft2(np.fft.rfft2(wide) * measured_over_ideal(otf_path, wide.shape), s=wide.shape)
    scale = PHOTONS / np.percentile(wide[m : m + SIDE, m : m + SIDE], 99.9)
    images = {}
    for name, image in (("ideal Airy", wide), ("measured OTF", blurred)):
        signal = np.clip(image[m : m + SIDE, m : m + SIDE], 0, None) * scale
        images[name] = camera_noise(signal, BACKGROUND * PHOTONS, 2.0, np.random.default_rng(rng.integers(1 << 30)))
    return images, sharp * scale * 4


def score(estimate: np.ndarray, target: np.ndarray) -> float:
    """PSNR after an affine fit, inner part."""
    e, t = estimate[BORDER:-BORDER, BORDER:-BORDER], target[BORDER:-BORDER, BORDER:-BORDER]
    return psnr(affine_fit(e, t), t)


def tuned_rl(image: np.ndarray, target: np.ndarray) -> float:
    """Richardson–Lucy with the PSF width and iterations that score best against this very target."""
    return max(
        score(richardson_lucy_sr(image, OPTICS.replace(na=OPTICS.na * k), it), target)
        for k in (0.9, 1.0, 1.1)
        for it in (5, 10, 20, 40)
    )


def main(model_name: str, otf_path: str, n: str = "4") -> None:
    model = model_at(load_model(model_name), {"pixel_um": 0.0626, "na": 1.35, "wavelength_um": 0.52})
    options = SamplingOptions(8, 8, 0, "cpu", None)
    rng = np.random.default_rng(20261203)
    rows: dict[tuple[str, str], list[float]] = {}
    for cls in CLASSES:
        for _ in range(int(n)):
            images, target = scene(cls, otf_path, rng)
            for name, image in images.items():
                rows.setdefault((name, "bicubic"), []).append(score(bicubic_upsample(image), target))
                rows.setdefault((name, "Richardson–Lucy, tuned"), []).append(tuned_rl(image, target))
                mean = model.predict_with(image.astype(np.float32), options).mean
                rows.setdefault((name, f"CVDM {model_name}"), []).append(score(mean, target))
    print("| transfer | method | PSNR (dB) |\n|---|---|---|")
    for (name, method), values in rows.items():
        print(f"| {name} | {method} | {np.mean(values):.2f} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
