"""Free-space propagation of complex fields (torch, CPU or GPU, batched). Lengths in µm.

Sign convention (fixed by the project): positive ``dz`` propagates along the
light, away from the sample. The paraxial (Fresnel) transfer function is

    H(f) = exp(−iπ·λ·dz·|f|²)

(the constant phase ``exp(ikdz)`` dropped), so a positive phase bump focuses
light: the intensity at its centre rises from −dz to +dz, and the TIE reads
``∂I/∂z = −(1/k)·∇·(I∇φ)``. The angular-spectrum transfer function
``exp(i2π·dz·(√(n²/λ² − |f|²) − n/λ))`` has the same sign and reduces to the
Fresnel one for small ``|f|``; evanescent frequencies are removed.

Fields are ``(..., H, W)`` complex tensors sampled at ``pixel_um``; propagation
is periodic (FFT), so callers pad when the field is not periodic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .optics import Optics

__all__ = [
    "frequency_grid",
    "fresnel_transfer",
    "angular_spectrum_transfer",
    "propagate",
    "fresnel_propagate",
    "angular_spectrum_propagate",
    "phase_object",
    "defocus_stack",
    "polychromatic_intensity",
    "QPIOptics",
    "defocused_pair",
]


def frequency_grid(
    shape: tuple[int, int],
    pixel_um: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Squared spatial frequency ``|f|²`` in cycles²/µm², shape ``(H, W)``, FFT order."""
    fy = torch.fft.fftfreq(shape[0], d=pixel_um, device=device, dtype=dtype)
    fx = torch.fft.fftfreq(shape[1], d=pixel_um, device=device, dtype=dtype)
    return fy[:, None] ** 2 + fx[None, :] ** 2


def fresnel_transfer(
    shape: tuple[int, int],
    dz_um: float,
    wavelength_um: float,
    pixel_um: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Paraxial transfer function ``exp(−iπλ·dz·|f|²)``, complex ``(H, W)``."""
    f2 = frequency_grid(shape, pixel_um, device)
    return torch.exp(-1j * math.pi * wavelength_um * dz_um * f2)


def angular_spectrum_transfer(
    shape: tuple[int, int],
    dz_um: float,
    wavelength_um: float,
    pixel_um: float,
    n_medium: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Angular-spectrum transfer function without the constant phase, complex ``(H, W)``.

    Frequencies beyond ``n/λ`` (evanescent waves) are set to zero.
    """
    f2 = frequency_grid(shape, pixel_um, device)
    k2 = (n_medium / wavelength_um) ** 2
    kz = torch.sqrt(torch.clamp(k2 - f2, min=0.0))
    h = torch.exp(1j * 2 * math.pi * dz_um * (kz - n_medium / wavelength_um))
    return torch.where(f2 <= k2, h, torch.zeros_like(h))


def propagate(field: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Apply a transfer function: ``IFFT(FFT(field)·H)``, ``(..., H, W)`` complex."""
    spectrum = torch.fft.fft2(field.to(torch.complex128 if transfer.dtype == torch.complex128 else field.dtype))
    return torch.fft.ifft2(spectrum * transfer.to(spectrum.dtype))


def fresnel_propagate(field: torch.Tensor, dz_um: float, wavelength_um: float, pixel_um: float) -> torch.Tensor:
    """Propagate ``(..., H, W)`` complex fields by ``dz_um`` (paraxial)."""
    h = fresnel_transfer(tuple(field.shape[-2:]), dz_um, wavelength_um, pixel_um, field.device)
    return propagate(field, h)


def angular_spectrum_propagate(
    field: torch.Tensor, dz_um: float, wavelength_um: float, pixel_um: float, n_medium: float = 1.0
) -> torch.Tensor:
    """Propagate ``(..., H, W)`` complex fields by ``dz_um`` (non-paraxial, scalar)."""
    h = angular_spectrum_transfer(tuple(field.shape[-2:]), dz_um, wavelength_um, pixel_um, n_medium, field.device)
    return propagate(field, h)


def phase_object(phase_rad: torch.Tensor, amplitude: torch.Tensor | None = None) -> torch.Tensor:
    """Complex field ``A·exp(iφ)`` of a thin object under unit plane-wave illumination."""
    phase = phase_rad.to(torch.float64)
    field = torch.polar(torch.ones_like(phase), phase)
    return field if amplitude is None else field * amplitude.to(torch.float64)


def defocus_stack(
    field: torch.Tensor, dz_um: Sequence[float], wavelength_um: float, pixel_um: float, paraxial: bool = True
) -> torch.Tensor:
    """Intensities of a field at several defocus distances.

    Parameters
    ----------
    field
        ``(..., H, W)`` complex field at the sample plane.
    dz_um
        Defocus distances (µm), positive along the light.

    Returns
    -------
    torch.Tensor
        ``(..., Z, H, W)`` float64 intensities, one plane per distance.
    """
    step = fresnel_propagate if paraxial else angular_spectrum_propagate
    planes = [step(field, dz, wavelength_um, pixel_um).abs() ** 2 for dz in dz_um]
    return torch.stack(planes, dim=-3)


def polychromatic_intensity(
    phase_rad: torch.Tensor,
    dz_um: float,
    reference_wavelength_um: float,
    wavelengths_um: Sequence[float],
    weights: Sequence[float],
    pixel_um: float,
) -> torch.Tensor:
    """Defocused intensity of a pure phase object under partially coherent (polychromatic) light.

    The phase scales as ``φ(λ) = φ_ref·λ_ref/λ`` (optical path fixed, dispersion
    neglected); the intensities of the wavelengths are summed with the given
    spectral weights (normalised to 1).

    Parameters
    ----------
    phase_rad
        ``(..., H, W)`` phase at ``reference_wavelength_um``.

    Returns
    -------
    torch.Tensor
        ``(..., H, W)`` float64 intensity (1 where the light is undisturbed).
    """
    w = torch.as_tensor(list(weights), dtype=torch.float64)
    if len(wavelengths_um) != len(w) or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError("need one non-negative weight per wavelength, not all zero")
    w = w / w.sum()
    total = torch.zeros(phase_rad.shape, dtype=torch.float64, device=phase_rad.device)
    for lam, wk in zip(wavelengths_um, w):
        field = phase_object(phase_rad * (reference_wavelength_um / lam))
        total = total + float(wk) * fresnel_propagate(field, dz_um, lam, pixel_um).abs() ** 2
    return total


@dataclass(frozen=True)
class QPIOptics(Optics):
    """Optics of the ``qpi`` task (defaults: the bundled model's).

    Parameters
    ----------
    wavelength_um
        Illumination wavelength, µm.
    pixel_um
        Pixel size at the sample, µm.
    dz_um
        Defocus distance; the input planes are at ``−dz`` and ``+dz``.
    noise
        Noise σ of simulated images (unit illumination = 1); not given: drawn per image from 0.003–0.03.
    max_phase
        Phase range of the objects, rad.
    """

    wavelength_um: float = field(default=0.521, metadata={"cli": "--wavelength", "label": "wavelength (µm)"})
    pixel_um: float = field(default=0.21, metadata={"cli": "--pixel-size", "label": "pixel size (µm)"})
    dz_um: float = field(default=1.0, metadata={"cli": "--dz", "label": "defocus dz (µm)"})
    noise: float | None = field(default=None, metadata={"cli": "--noise", "form": False})
    max_phase: float = field(default=3.5, metadata={"cli": "--max-phase", "label": "phase range (rad)"})

    def __post_init__(self) -> None:
        if self.wavelength_um <= 0 or self.pixel_um <= 0 or self.dz_um <= 0:
            raise ValueError("wavelength, pixel size and dz must be positive (in µm)")
        if self.wavelength_um > 5 or self.pixel_um > 50:
            raise ValueError("wavelength and pixel size are in µm: these values look like nm")
        if (self.noise is not None and self.noise < 0) or self.max_phase <= 0:
            raise ValueError("noise must be >= 0 and max_phase > 0")


def defocused_pair(phase: np.ndarray, optics: QPIOptics) -> np.ndarray:
    """Noise-free intensities at ``−dz`` and ``+dz`` of ``exp(iφ)``, ``(2, H, W)`` float64.

    The field is mirror-padded by half its size on each side before the
    (periodic) FFT propagation, then cropped.
    """
    h, w = phase.shape
    py, px = h // 2, w // 2
    padded = np.pad(phase, ((py, py), (px, px)), mode="symmetric")
    wave = phase_object(torch.from_numpy(padded))
    planes = [
        fresnel_propagate(wave, dz, optics.wavelength_um, optics.pixel_um).abs() ** 2
        for dz in (-optics.dz_um, optics.dz_um)
    ]
    return torch.stack(planes).numpy()[:, py : py + h, px : px + w]
