"""Transport-of-intensity equation (TIE): the classical phase baseline. Lengths in µm.

With the project's sign convention (positive ``dz`` along the light) the TIE is
``∂I/∂z = −(1/k)·∇·(I∇φ)``, ``k = 2π/λ``. Under near-uniform illumination
``I ≈ I₀`` it becomes the Poisson equation ``∇²φ = −k·(∂I/∂z)/I₀``, solved with
FFTs and a Tikhonov term:

    φ̂(f) = k·FT(∂I/∂z)(f) / (I₀·(4π²|f|² + α))

``∂I/∂z ≈ (I(+dz) − I(−dz))/(2dz)``. ``α`` (µm⁻²) damps the low frequencies,
where noise is amplified most; its default was chosen on a validation set
(``QPITask.tune_baselines``, ``napari-cvdm evaluate --tune-baselines``). The images are
mirror-padded to twice their size so that the FFT sees no edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["tie_phase", "tie_phase_torch", "DEFAULT_TIE_REGULARIZATION"]

#: α in µm⁻², chosen on a validation set of camera crops of larger fields (0.03–0.1 best there; 1e-3 was
#: best on the old mirror-padded fields; see docs/physics.md).
DEFAULT_TIE_REGULARIZATION = 0.1


def tie_phase_torch(
    i_minus: torch.Tensor,
    i_plus: torch.Tensor,
    dz_um: float,
    wavelength_um: float,
    pixel_um: float,
    regularization: float = DEFAULT_TIE_REGULARIZATION,
) -> torch.Tensor:
    """Batched TIE in torch: ``(..., H, W)`` intensities → ``(..., H, W)`` zero-mean phase (rad).

    Same solver as :func:`tie_phase` (which wraps this), on CPU or GPU, in float64.
    """
    if i_minus.shape != i_plus.shape or i_minus.ndim < 2:
        raise ValueError(
            f"need two (..., H, W) images of the same shape, got {tuple(i_minus.shape)} and {tuple(i_plus.shape)}"
        )
    if dz_um <= 0 or wavelength_um <= 0 or pixel_um <= 0 or regularization < 0:
        raise ValueError("dz, wavelength and pixel size must be positive and the regularization >= 0")
    i_minus, i_plus = i_minus.double(), i_plus.double()
    h, w = i_minus.shape[-2:]
    i0 = ((i_minus + i_plus) / 2).mean(dim=(-2, -1), keepdim=True)
    if (i0 <= 0).any():
        raise ValueError("the mean intensity must be positive (divide the images by the background)")
    didz = (i_plus - i_minus) / (2 * dz_um)
    padded = torch.cat([didz, didz.flip(-1)], dim=-1)  # even extension: no edge jumps for the FFT
    padded = torch.cat([padded, padded.flip(-2)], dim=-2)
    fy = torch.fft.fftfreq(2 * h, d=pixel_um, dtype=torch.float64, device=didz.device)
    fx = torch.fft.fftfreq(2 * w, d=pixel_um, dtype=torch.float64, device=didz.device)
    lap = 4 * math.pi**2 * (fy[:, None] ** 2 + fx[None, :] ** 2)
    k = 2 * math.pi / wavelength_um
    denom = lap + regularization
    denom[0, 0] = 1.0  # the mean is undefined: set to zero below
    phi_hat = k * torch.fft.fft2(padded) / (i0 * denom)
    phi_hat[..., 0, 0] = 0
    phase = torch.fft.ifft2(phi_hat).real[..., :h, :w]
    return phase - phase.mean(dim=(-2, -1), keepdim=True)


def tie_phase(
    i_minus: np.ndarray,
    i_plus: np.ndarray,
    dz_um: float,
    wavelength_um: float,
    pixel_um: float,
    regularization: float = DEFAULT_TIE_REGULARIZATION,
) -> np.ndarray:
    """Phase (rad) from two defocused intensities.

    Parameters
    ----------
    i_minus, i_plus
        Intensities ``(H, W)`` at ``−dz`` and ``+dz`` (unit illumination ≈ 1).
    dz_um
        Defocus distance, µm (positive).
    wavelength_um, pixel_um
        Wavelength and pixel size, µm.
    regularization
        Tikhonov ``α`` in µm⁻² (≥ 0; 0 only removes the mean).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64 phase with zero mean (phase is defined up to a constant).
    """
    a, b = np.asarray(i_minus, dtype=np.float64), np.asarray(i_plus, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (H, W) images of the same shape, got {a.shape} and {b.shape}")
    return tie_phase_torch(
        torch.from_numpy(a), torch.from_numpy(b), dz_um, wavelength_um, pixel_um, regularization
    ).numpy()
