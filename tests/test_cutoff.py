"""The optical cut-off read off a widefield image's own spectrum, for users who do not know their NA or wavelength."""

import numpy as np
import pytest

from napari_cvdm.data.simulate import SRConditions, simulate_sr_scene
from napari_cvdm.physics.cutoff import estimate_cutoff, widefield_otf
from napari_cvdm.physics.widefield import WidefieldOptics


def test_the_otf_is_one_at_zero_and_vanishes_at_the_cutoff():
    assert widefield_otf(np.array([0.0]))[0] == pytest.approx(1.0)
    assert widefield_otf(np.array([1.0, 1.5])) == pytest.approx([0.0, 0.0])
    assert np.all(np.diff(widefield_otf(np.linspace(0, 1, 50))) < 0)


@pytest.mark.parametrize(
    ("na", "wavelength_um", "pixel_um"), [(0.8, 0.68, 0.0626), (1.3, 0.525, 0.0626), (1.49, 0.45, 0.07)]
)
def test_the_cutoff_of_simulated_cameras_is_found_within_fifteen_percent(na, wavelength_um, pixel_um):
    optics = WidefieldOptics(na=na, wavelength_um=wavelength_um, pixel_um=pixel_um)
    rng = np.random.default_rng(3)
    found = [
        estimate_cutoff(simulate_sr_scene(s, (128, 128), SRConditions(200.0, 0.1), rng, optics).input)
        for s in ("er", "ccps")
    ]
    assert np.asarray(found) / optics.cutoff_cycles_per_pixel == pytest.approx([1.0, 1.0], abs=0.15)


def test_an_image_too_small_for_a_spectrum_is_refused():
    with pytest.raises(ValueError, match="at least 64"):
        estimate_cutoff(np.zeros((32, 100)))


def test_a_defocused_image_keeps_its_cutoff():
    """Defocus weakens the middle of the passband, not the cut-off: fitted with the ideal OTF's shape alone, such
    an image read as 1.5–1.6× its cut-off."""
    from napari_cvdm.physics.aberrations import depth_of_field_um
    from napari_cvdm.physics.cutoff import defocused_otf_profile

    assert defocused_otf_profile(np.linspace(0, 1, 9), 0.0) == pytest.approx(
        widefield_otf(np.linspace(0, 1, 9)), abs=2e-3
    )
    optics = WidefieldOptics()
    defocused = SRConditions(300.0, 0.1, defocus_um=0.8 * depth_of_field_um(optics), spherical_waves=0.15)
    found = [
        estimate_cutoff(simulate_sr_scene(s, (128, 128), defocused, np.random.default_rng(3), optics).input)
        for s in ("microtubules", "ccps")
    ]
    assert np.asarray(found) / optics.cutoff_cycles_per_pixel == pytest.approx([1.0, 1.0], abs=0.15)
