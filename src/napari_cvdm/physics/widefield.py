"""Widefield fluorescence optics and camera, and the classical SR baselines. Lengths in µm.

* PSF: the in-focus Airy pattern of a circular pupil,
  ``PSF(r) = (π·NA²/λ²)·[2·J₁(v)/v]²`` with ``v = 2π·NA·r/λ`` (unit integral over
  the plane), averaged over each pixel from a finer grid and normalised to sum
  to 1 on its finite support. FWHM ≈ 0.51·λ/NA.
* SIM-like target: the same Airy pattern with ``NA × gain`` (``gain = 2``), i.e.
  a PSF half as wide.
* Camera: Poisson photon noise on signal + background, plus Gaussian read noise.
* Baselines: bicubic interpolation, and Richardson–Lucy deconvolution
  (scikit-image) of the background-subtracted, bicubic-upsampled image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import j1

from .cutoff import windowed_power
from .optics import Optics

__all__ = [
    "WidefieldOptics",
    "airy_psf",
    "camera_noise",
    "bicubic_upsample",
    "richardson_lucy_sr",
    "widefield_from_target",
    "DEFAULT_RL_ITERATIONS",
    "out_of_band_ratio",
    "defocused_otf",
    "IMMERSION_INDEX",
]

#: Refractive index of the immersion medium (oil) for defocus.
IMMERSION_INDEX = 1.518

#: Richardson–Lucy iterations chosen on the validation set of the default sr optics (docs/physics.md).
DEFAULT_RL_ITERATIONS = 5


@dataclass(frozen=True)
class WidefieldOptics(Optics):
    """Optics and camera of the ``sr`` task (defaults: the bundled model's).

    Parameters
    ----------
    na
        Numerical aperture of the widefield objective.
    wavelength_um
        Emission wavelength, µm.
    pixel_um
        Camera pixel size at the sample, µm (the input grid).
    gain
        Resolution gain of the target: its PSF is ``gain`` times narrower and
        its pixel ``gain`` times smaller.
    background_fraction
        Background as a fraction of the signal level.
    read_noise
        Gaussian read noise, standard deviation in photo-electrons.
    """

    na: float = field(default=1.3, metadata={"cli": "--na", "label": "NA"})
    wavelength_um: float = field(default=0.525, metadata={"cli": "--wavelength", "label": "emission wavelength (µm)"})
    pixel_um: float = field(default=0.0626, metadata={"cli": "--pixel-size", "label": "camera pixel (µm)"})
    gain: int = 2
    background_fraction: float = field(
        default=0.1, metadata={"cli": "--background", "label": "background (fraction of signal)"}
    )
    read_noise: float = field(default=2.0, metadata={"cli": "--read-noise", "label": "read noise (e⁻)"})

    def __post_init__(self) -> None:
        if not (0 < self.na < 1.7):
            raise ValueError(f"NA must be in (0, 1.7), got {self.na}")
        if self.wavelength_um <= 0 or self.pixel_um <= 0:
            raise ValueError("wavelength and pixel size must be positive (in µm)")
        if self.wavelength_um > 5 or self.pixel_um > 5:
            raise ValueError("wavelength and pixel size are in µm: values above 5 look like nm")
        if self.gain not in (2,):
            raise ValueError("only a 2× resolution gain is supported")
        if self.background_fraction < 0 or self.read_noise < 0:
            raise ValueError("background fraction and read noise must be >= 0")

    @property
    def target_pixel_um(self) -> float:
        """Pixel size of the target grid, µm."""
        return self.pixel_um / self.gain

    @property
    def psf_sigma_px(self) -> float:
        """σ of the Gaussian that approximates the widefield Airy PSF, ``0.21·λ/NA``, in camera pixels (1.35 for the
        bundled optics; the target's PSF is ``gain`` times narrower on a ``gain`` times finer grid: the same
        number of its pixels)."""
        return 0.21 * self.wavelength_um / (self.na * self.pixel_um)

    @property
    def cutoff_cycles_per_pixel(self) -> float:
        """The widefield OTF's cut-off ``2·NA/λ`` in cycles per camera pixel (Nyquist is 0.5)."""
        return 2 * self.na / self.wavelength_um * self.pixel_um


def _airy(r_um: np.ndarray, na: float, wavelength_um: float) -> np.ndarray:
    v = 2 * math.pi * na * r_um / wavelength_um
    safe = np.where(v == 0, 1.0, v)
    amp = np.where(v == 0, 1.0, 2 * j1(safe) / safe)
    return (math.pi * na**2 / wavelength_um**2) * amp**2


def airy_psf(
    na: float,
    wavelength_um: float,
    pixel_um: float,
    radius_um: float | None = None,
    oversample: int = 7,
    normalize: bool = True,
) -> np.ndarray:
    """Pixel-integrated Airy PSF.

    Parameters
    ----------
    na, wavelength_um, pixel_um
        Numerical aperture, wavelength (µm) and pixel size (µm).
    radius_um
        Half-width of the kernel; default ``4·λ/NA`` (about 6.5 Airy radii).
    oversample
        Sub-samples per pixel and axis (odd) used to integrate over the pixel.
    normalize
        Scale to sum 1. Otherwise the values are the fraction of the total energy
        falling on each pixel (their sum is the encircled energy of the support).

    Returns
    -------
    numpy.ndarray
        ``(2R+1, 2R+1)`` float64 kernel, centred.
    """
    if oversample < 1 or oversample % 2 == 0:
        raise ValueError("oversample must be a positive odd integer")
    radius_um = 4 * wavelength_um / na if radius_um is None else radius_um
    half = max(1, int(math.ceil(radius_um / pixel_um)))
    n = 2 * half + 1
    sub = (np.arange(n * oversample) - (n * oversample - 1) / 2) * (pixel_um / oversample)
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    fine = _airy(np.hypot(yy, xx), na, wavelength_um) * (pixel_um / oversample) ** 2
    psf = fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
    return psf / psf.sum() if normalize else psf


def camera_noise(
    signal_photons: np.ndarray, background_photons: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Camera model: ``Poisson(signal + background) + N(0, read_noise²)``.

    Parameters
    ----------
    signal_photons
        Expected photons per pixel (≥ 0), any shape.
    background_photons
        Uniform background, photons per pixel.
    read_noise
        Read-noise standard deviation, photo-electrons.

    Returns
    -------
    numpy.ndarray
        float32 image in photo-electrons (may be slightly negative from read noise).
    """
    lam = np.clip(np.asarray(signal_photons, dtype=np.float64), 0, None) + background_photons
    counts = rng.poisson(lam).astype(np.float64)
    return (counts + rng.normal(0.0, read_noise, size=lam.shape)).astype(np.float32)


#: Mirror padding of :func:`widefield_from_target` beyond the kernel's radius, at most (pixels of the target grid):
#: enough against edge effects, and an 8192² target no longer pads by a quarter (which took 15 GB).
MAX_EDGE_PAD = 128


def _rotf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real OTF ``(H, W//2 + 1)`` (``rfft2`` layout) of a centred, symmetric kernel, zero-padded to ``shape``."""
    pad = np.zeros(shape, np.float32)
    k = psf.shape[0]
    pad[:k, :k] = psf
    pad = np.roll(pad, (-(k // 2), -(k // 2)), axis=(0, 1))
    return np.fft.rfft2(pad).real.copy()


def widefield_from_target(target: np.ndarray, optics: WidefieldOptics) -> np.ndarray:
    """The widefield image a sharp (target-like) reconstruction implies: the forward model of the ``sr`` task.

    The target is the object seen through a PSF ``gain`` times narrower on pixels ``gain`` times smaller; the
    widefield image is the same object through the widefield PSF on camera pixels. So the target is filtered
    with ``OTF_wf/OTF_target`` (where the narrow OTF is above 10⁻³; it covers the widefield passband) and
    averaged over ``gain × gain`` blocks. Mirror-padded (by a quarter of the image, at least the kernel's
    radius and at most :data:`MAX_EDGE_PAD` beyond it) against edge effects; real FFTs, so an 8192² target
    needs about 3 GB.

    Parameters
    ----------
    target
        ``(gain·H, gain·W)`` reconstruction on the target grid.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64 widefield image in the target's units (per camera-pixel area, no background).
    """
    y = np.asarray(target, np.float32)
    g = optics.gain
    if y.ndim != 2 or y.shape[0] % g or y.shape[1] % g:
        raise ValueError(f"need a ({g}·H, {g}·W) target, got shape {y.shape}")
    wide = airy_psf(optics.na, optics.wavelength_um, optics.target_pixel_um)
    sharp = airy_psf(optics.na * g, optics.wavelength_um, optics.target_pixel_um)
    radius = wide.shape[0] // 2 + 1
    p = max(min(max(y.shape) // 4, radius + MAX_EDGE_PAD), radius)  # the padded image holds the whole kernel
    padded = np.pad(y, p, mode="symmetric")
    ratio = _rotf(sharp, padded.shape)
    passed = np.abs(ratio) > 1e-3
    np.divide(_rotf(wide, padded.shape), ratio, out=ratio, where=passed)
    ratio[~passed] = 0.0
    del passed
    spectrum = np.fft.rfft2(padded)
    del padded
    spectrum *= ratio
    del ratio
    blurred = np.fft.irfft2(spectrum, s=(y.shape[0] + 2 * p, y.shape[1] + 2 * p))[
        p : p + y.shape[0], p : p + y.shape[1]
    ]
    h, w = y.shape[0] // g, y.shape[1] // g
    return blurred.reshape(h, g, w, g).mean(axis=(1, 3))


def bicubic_upsample(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """Bicubic interpolation of ``(H, W)`` to ``(factor·H, factor·W)`` (pixel centres aligned)."""
    from skimage.transform import resize

    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape
    return resize(image, (factor * h, factor * w), order=3, mode="reflect", anti_aliasing=False)


def richardson_lucy_sr(
    image: np.ndarray, optics: WidefieldOptics, iterations: int = DEFAULT_RL_ITERATIONS, background: float | None = None
) -> np.ndarray:
    """Richardson–Lucy deconvolution on the target grid.

    The background (default: the image's 1st percentile) is subtracted, the
    image is bicubic-upsampled to the target grid and deconvolved with the
    widefield PSF sampled there.

    Parameters
    ----------
    image
        ``(H, W)`` widefield image (photo-electrons or any linear unit).
    optics
        The widefield optics.
    iterations
        RL iterations.
    background
        Background level in the image's units.

    Returns
    -------
    numpy.ndarray
        ``(2H, 2W)`` float64 estimate (same units as the background-free signal).
    """
    from skimage.restoration import richardson_lucy

    image = np.asarray(image, dtype=np.float64)
    bg = float(np.percentile(image, 1)) if background is None else background
    up = np.clip(bicubic_upsample(image - bg, optics.gain), 0, None)
    scale = float(up.max()) or 1.0
    psf = airy_psf(optics.na, optics.wavelength_um, optics.target_pixel_um)
    est = richardson_lucy(up / scale, psf, num_iter=iterations, clip=False)
    return est * scale


def out_of_band_ratio(image: np.ndarray, cutoff: float) -> float:
    """Power just beyond the optical cut-off over the power of the highest frequencies (≥ 0.55 cycles/pixel,
    the corners of the spectrum) of an ``(H, W)`` image (Hann-windowed).

    An image sampled finely enough for its optics has only (white) noise beyond ``cutoff``, so the ratio is
    about 1 whatever the structures; an undersampled image (pixels larger than the optics assume: binning, a
    lower magnification) carries signal there, which falls off towards the corners: the ratio grows well above 1.

    Parameters
    ----------
    cutoff
        The optics' cut-off, cycles per pixel (< 0.4, so that both bands exist).
    """
    if not 0 < cutoff < 0.4:
        raise ValueError(f"the cut-off must lie between 0 and 0.4 cycles per pixel, got {cutoff:.3f}")
    power, f = windowed_power(image)
    beyond = power[(f > 1.1 * cutoff) & (f < min(1.4 * cutoff, 0.45))]
    corners = power[f > 0.55]
    return float(np.mean(beyond) / max(np.mean(corners), 1e-30))


def defocused_otf(shape: tuple[int, int], optics: WidefieldOptics, z_um: float) -> np.ndarray:
    """OTF ``(H, W)`` (numpy FFT layout, 1 at zero frequency) of the widefield microscope ``z_um`` out of focus,
    on the camera grid: the scalar pupil ``|f| ≤ NA/λ`` with the defocus phase ``exp(2πi·z·√((n/λ)² − |f|²))``,
    its intensity PSF ``|IFFT|²``, Fourier-transformed back. The PSF wraps around ``shape``: pad the object by
    the blur radius ``|z|·tan(asin(NA/n))`` before using it."""
    h, w = shape
    fy = np.fft.fftfreq(h, d=optics.pixel_um)[:, None]
    fx = np.fft.fftfreq(w, d=optics.pixel_um)[None, :]
    f2 = fy**2 + fx**2
    pupil = (f2 <= (optics.na / optics.wavelength_um) ** 2).astype(np.complex128)
    kz = np.sqrt(np.maximum((IMMERSION_INDEX / optics.wavelength_um) ** 2 - f2, 0.0))
    psf = np.abs(np.fft.ifft2(pupil * np.exp(2j * math.pi * z_um * kz))) ** 2
    otf = np.fft.fft2(psf / psf.sum())
    return otf
