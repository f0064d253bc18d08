"""A real microscope's widefield transfer: the scalar pupil with a small defocus and primary spherical aberration.

No real microscope images its in-focus plane through the ideal Airy pattern: the structure lies a little above or
below the focal plane (a thin cell, a TIRF layer, a focus that drifts), and a refractive-index mismatch adds
spherical aberration. Both lower the OTF in the middle of its passband while leaving its cut-off ``2·NA/λ`` where it
was — the shape a measured OTF has. Lengths in µm.

* Defocus ``z``: the exact phase ``exp(2πi·z·√((n/λ)² − |f|²))`` over the pupil ``|f| ≤ NA/λ`` (``n`` the immersion
  index), drawn in units of the depth of field ``n·λ/NA²``, so that it scales with the optics.
* Spherical aberration: the primary Zernike term ``s·(6ρ⁴ − 6ρ² + 1)`` in waves, ``ρ = |f|·λ/NA``.
"""

from __future__ import annotations

import math

import numpy as np

from .widefield import IMMERSION_INDEX, WidefieldOptics

__all__ = ["DEFOCUS_RANGE", "SPHERICAL_RANGE", "depth_of_field_um", "pupil_otf"]

#: Defocus of the in-focus structure drawn for the ``aberrated`` sr scenes, in depths of field (either sign).
DEFOCUS_RANGE = (0.0, 0.8)
#: Primary spherical aberration drawn for them, waves (either sign).
SPHERICAL_RANGE = (0.0, 0.15)


def depth_of_field_um(optics: WidefieldOptics) -> float:
    """The depth of field ``n·λ/NA²`` (µm) that a defocus is measured in."""
    return IMMERSION_INDEX * optics.wavelength_um / optics.na**2


def pupil_otf(
    shape: tuple[int, int], pixel_um: float, optics: WidefieldOptics, z_um: float = 0.0, spherical_waves: float = 0.0
) -> np.ndarray:
    """OTF ``(H, W//2 + 1)`` (``numpy.fft.rfft2`` layout, 1 at zero frequency) of the widefield microscope with
    ``optics``' NA and emission, sampled on a grid of ``shape`` pixels of ``pixel_um``: the pupil with defocus
    ``z_um`` and spherical aberration ``spherical_waves``, its intensity PSF ``|IFFT|²``, transformed back. The PSF
    wraps around ``shape``: pad the object by its reach before using it.

    Parameters
    ----------
    shape
        ``(H, W)`` of the grid; its Nyquist frequency ``1/(2·pixel_um)`` must exceed the pupil's ``NA/λ``.
    pixel_um
        Pixel of the grid, µm (the simulator's fine grid: a quarter of the camera pixel).
    """
    na_f = optics.na / optics.wavelength_um
    if na_f >= 0.5 / pixel_um:
        raise ValueError(f"a {pixel_um} µm grid cannot hold the pupil (NA/λ = {na_f:.2f} µm⁻¹)")
    fy = np.fft.fftfreq(shape[0], d=pixel_um)[:, None]
    fx = np.fft.fftfreq(shape[1], d=pixel_um)[None, :]
    f2 = fy**2 + fx**2
    rho2 = f2 / na_f**2
    kz = np.sqrt(np.maximum((IMMERSION_INDEX / optics.wavelength_um) ** 2 - f2, 0.0))
    phase = z_um * kz + spherical_waves * (6 * rho2**2 - 6 * rho2 + 1)
    pupil = np.where(rho2 <= 1, np.exp(2j * math.pi * phase), 0)
    psf = np.abs(np.fft.ifft2(pupil)) ** 2
    otf = np.fft.rfft2(psf)
    return (otf / otf[0, 0]).real  # a radially symmetric pupil: a symmetric PSF, a real OTF
