"""TIFF I/O and the napari reader: pixel size and axes survive, bad files give clear errors."""

import numpy as np
import pytest
import tifffile

from napari_cvdm._reader import napari_get_reader, read_layers
from napari_cvdm.data.tiff import TiffReadError, read_tiff, write_tiff


def test_imagej_pixel_size_round_trip(tmp_path):
    img = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    path = write_tiff(tmp_path / "wf.tif", img, pixel_size_um=0.0626)
    got = read_tiff(path)
    np.testing.assert_array_equal(got.data, img)
    assert got.axes == "YX"
    assert got.pixel_size_um == pytest.approx((0.0626, 0.0626), rel=1e-6)


def test_stack_keeps_pixel_size_and_z_spacing(tmp_path):
    stack = np.zeros((3, 32, 32), np.uint16)
    path = write_tiff(tmp_path / "stack.tif", stack, pixel_size_um=(0.1, 0.12), axes="ZYX", z_spacing_um=0.5)
    got = read_tiff(path)
    assert got.data.shape == (3, 32, 32) and got.data.dtype == np.uint16
    assert got.axes == "ZYX"
    assert got.pixel_size_um == pytest.approx((0.1, 0.12), rel=1e-6)
    assert got.z_spacing_um == pytest.approx(0.5)


def test_ome_pixel_size_in_nanometres(tmp_path):
    path = tmp_path / "ome.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((2, 16, 16), np.float32),
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 210.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 210.0,
            "PhysicalSizeYUnit": "nm",
        },
    )
    got = read_tiff(path)
    assert got.pixel_size_um == pytest.approx((0.21, 0.21))
    assert got.data.shape == (2, 16, 16)


def test_reader_gives_layers_with_scale(tmp_path):
    pair = np.random.default_rng(1).random((2, 24, 24)).astype(np.float32)
    path = write_tiff(tmp_path / "qpi_pair.tif", pair, pixel_size_um=0.21, axes="CYX")
    reader = napari_get_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image"
    assert data.shape == (2, 24, 24)
    assert kwargs["name"] == "qpi_pair"
    assert kwargs["scale"] == pytest.approx((1.0, 0.21, 0.21))
    assert kwargs["axis_labels"] == ("c", "y", "x")
    assert kwargs["metadata"]["pixel_size_um"] == pytest.approx((0.21, 0.21))


def test_file_without_pixel_size_gets_unit_scale(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    [(_, kwargs, _)] = read_layers(str(path))
    assert kwargs["scale"] == (1.0, 1.0)
    assert kwargs["metadata"]["pixel_size_um"] is None


def test_reader_declines_other_files():
    assert napari_get_reader("image.png") is None
    assert napari_get_reader(["a.tif", "b.png"]) is None


@pytest.mark.parametrize(
    "content, match", [(b"", "empty"), (b"this is not a tiff at all", "cannot be read"), (None, "not found")]
)
def test_unreadable_files_give_a_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.tif"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TiffReadError, match=match) as info:
        read_tiff(path)
    assert "bad.tif" in str(info.value)


def test_truncated_file_gives_a_clear_error(tmp_path):
    good = write_tiff(tmp_path / "good.tif", np.ones((64, 64), np.float32))
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(TiffReadError, match="truncated.tif"):
        read_tiff(bad)


def test_one_unit_table_for_files_and_layers():
    from napari_cvdm.data.tiff import um_per_unit

    assert um_per_unit("nm") == um_per_unit("nanometer") == 1e-3 and um_per_unit("µm") == um_per_unit("MICRON") == 1
    assert um_per_unit("pixel") is None and um_per_unit("furlong") is None  # not a length we can use
    assert um_per_unit(None) is None and um_per_unit(None, missing=1.0) == 1.0  # napari pixels vs OME's µm default
