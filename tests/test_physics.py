"""Optics: propagation identities, the weak-phase transfer function, TIE, PSF and camera statistics."""

import math

import numpy as np
import pytest
import torch

from napari_cvdm.physics.fresnel import (
    QPIOptics,
    angular_spectrum_propagate,
    defocus_stack,
    defocused_pair,
    fresnel_propagate,
    phase_object,
    polychromatic_intensity,
)
from napari_cvdm.physics.tie import tie_phase
from napari_cvdm.physics.widefield import airy_psf, camera_noise

LAM, PIX = 0.521, 0.21


def _random_field(seed=0, shape=(64, 64)):
    g = torch.Generator().manual_seed(seed)
    amp = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    return phase_object(3 * torch.rand(shape, generator=g, dtype=torch.float64), amp)


@pytest.mark.parametrize("propagate", [fresnel_propagate, angular_spectrum_propagate])
def test_propagation_conserves_energy(propagate):
    field = _random_field()
    out = propagate(field, 3.0, LAM, 0.4)  # 0.4 µm pixels: even the corner frequency (1.77/µm) < 1/λ
    assert float((out.abs() ** 2).sum()) == pytest.approx(float((field.abs() ** 2).sum()), rel=1e-10)


@pytest.mark.parametrize("propagate", [fresnel_propagate, angular_spectrum_propagate])
def test_forward_then_back_returns_the_field(propagate):
    field = _random_field(1)
    back = propagate(propagate(field, 2.5, LAM, 0.4), -2.5, LAM, 0.4)
    torch.testing.assert_close(back, field, atol=1e-10, rtol=1e-10)


def test_plane_wave_is_unchanged_and_batches_work():
    plane = torch.ones(3, 32, 32, dtype=torch.complex128) * torch.exp(torch.tensor(0.7j, dtype=torch.complex128))
    for propagate in (fresnel_propagate, angular_spectrum_propagate):
        torch.testing.assert_close(propagate(plane, 5.0, LAM, PIX), plane)


def test_weak_phase_contrast_follows_the_transfer_function():
    n, eps = 128, 1e-3
    yy, xx = np.mgrid[0:n, 0:n]
    for cycles in (3, 8, 15):
        f = cycles / (n * PIX)  # cycles/µm
        phi = eps * np.cos(2 * np.pi * cycles * xx / n)
        for dz in (-1.0, 0.5, 2.0):
            intensity = fresnel_propagate(phase_object(torch.from_numpy(phi)), dz, LAM, PIX).abs() ** 2
            expected = 1 + 2 * phi * math.sin(math.pi * LAM * dz * f**2)
            np.testing.assert_allclose(intensity.numpy(), expected, atol=5e-6)


def test_positive_phase_bump_focuses_light():
    n = 64
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    bump = 1.0 * np.exp(-(xx**2 + yy**2) / (2 * 4.0**2))
    minus, plus = defocused_pair(bump, QPIOptics())
    assert plus[n // 2, n // 2] > 1 > minus[n // 2, n // 2]


def test_angular_spectrum_matches_fresnel_for_slowly_varying_fields():
    n = 128
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    phi = torch.from_numpy(2 * np.exp(-(xx**2 + yy**2) / (2 * 10.0**2)))
    field = phase_object(phi)
    a = fresnel_propagate(field, 1.0, LAM, PIX).abs() ** 2
    b = angular_spectrum_propagate(field, 1.0, LAM, PIX).abs() ** 2
    assert float((a - b).abs().max()) < 2e-3


def test_defocus_stack_and_polychromatic_light():
    phi = torch.from_numpy(np.random.default_rng(0).random((32, 32)))
    stack = defocus_stack(phase_object(phi), [-1.0, 0.0, 1.0], LAM, PIX)
    assert stack.shape == (3, 32, 32)
    torch.testing.assert_close(stack[1], torch.ones(32, 32, dtype=torch.float64))  # pure phase in focus
    mono = polychromatic_intensity(phi, 1.0, LAM, [LAM], [1.0], PIX)
    torch.testing.assert_close(mono, stack[2])
    poly = polychromatic_intensity(phi, 1.0, LAM, [0.5, 0.52, 0.54], [1, 2, 1], PIX)
    assert poly.mean().item() == pytest.approx(1.0, abs=1e-9)  # energy per wavelength conserved
    assert float((poly - mono).abs().max()) > 1e-4  # and the spectrum matters


def test_tie_recovers_a_smooth_phase_within_5_percent():
    n = 128
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    phi = 1.5 * np.exp(-(xx**2 + yy**2) / (2 * 12.0**2)) + 0.8 * np.exp(-((xx - 20) ** 2 + (yy + 15) ** 2) / 80.0)
    optics = QPIOptics(dz_um=0.5)
    minus, plus = defocused_pair(phi, optics)
    est = tie_phase(minus, plus, optics.dz_um, optics.wavelength_um, optics.pixel_um, regularization=0.0)
    truth = phi - phi.mean()
    rel = np.linalg.norm(est - truth) / np.linalg.norm(truth)
    assert rel < 0.05, rel


def test_psf_integrates_to_one_and_has_the_airy_fwhm():
    na, lam = 1.3, 0.525
    psf = airy_psf(na, lam, 0.0626)
    assert psf.sum() == pytest.approx(1.0)
    energy = airy_psf(na, lam, 0.0626, normalize=False).sum()  # encircled energy of the support
    assert 0.97 < energy <= 1.0
    assert np.unravel_index(psf.argmax(), psf.shape) == (psf.shape[0] // 2,) * 2
    fine = airy_psf(na, lam, 0.002, radius_um=0.5, oversample=1)
    profile = fine[fine.shape[0] // 2]
    above = np.flatnonzero(profile >= profile.max() / 2)
    fwhm = (above[-1] - above[0] + 1) * 0.002
    assert fwhm == pytest.approx(0.51 * lam / na, rel=0.05)
    half = airy_psf(2 * na, lam, 0.002, radius_um=0.5, oversample=1)[fine.shape[0] // 2]
    fwhm_half = (np.flatnonzero(half >= half.max() / 2)[-1] - np.flatnonzero(half >= half.max() / 2)[0] + 1) * 0.002
    assert fwhm_half == pytest.approx(fwhm / 2, rel=0.05)


def test_camera_noise_statistics():
    rng = np.random.default_rng(0)
    signal, background, read = 40.0, 4.0, 2.0
    img = camera_noise(np.full((400, 400), signal), background, read, rng)
    assert img.dtype == np.float32
    assert img.mean() == pytest.approx(signal + background, rel=0.01)
    assert img.var() == pytest.approx(signal + background + read**2, rel=0.03)
    dark = camera_noise(np.zeros((400, 400)), 0.0, read, rng)
    assert dark.std() == pytest.approx(read, rel=0.03)
