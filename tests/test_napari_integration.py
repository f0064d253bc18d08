"""The npe2 manifest is valid and napari opens TIFFs through our reader (under Xvfb)."""

import importlib

import numpy as np
import pytest

from napari_cvdm.data.tiff import write_tiff


def test_manifest_validates_and_every_python_name_resolves():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-cvdm")
    assert manifest.display_name == "CVDM"
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        assert callable(obj), command.python_name
    assert manifest.contributions.readers


def test_napari_opens_a_tiff_with_its_pixel_size(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = write_tiff(
        tmp_path / "widefield.tif",
        np.random.default_rng(0).random((3, 32, 40)).astype(np.float32),
        pixel_size_um=0.0626,
        axes="ZYX",
        z_spacing_um=0.2,
    )
    layers = viewer.open(str(path), plugin="napari-cvdm")
    assert len(layers) == 1
    layer = viewer.layers["widefield"]
    assert layer.data.shape == (3, 32, 40)
    np.testing.assert_allclose(layer.scale, (0.2, 0.0626, 0.0626), rtol=1e-6)
