"""Microscope files beyond TIFF: OME-Zarr through bioio (a file the test writes), the message that names the extra
when a reader is missing, and one channel of a multi-channel image."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tifffile

from napari_cvdm.cli import main
from napari_cvdm.data.microscope_files import read_image, select_channel
from napari_cvdm.data.tiff import TiffReadError, read_tiff
from napari_cvdm.jobs.batch import expand_inputs


def _ome_zarr(path, data: np.ndarray) -> None:
    writers = pytest.importorskip("bioio_ome_zarr.writers", reason="the ome-zarr extra is not installed")
    writer = writers.OMEZarrWriter(
        str(path),
        level_shapes=data.shape,
        dtype=data.dtype,
        axes_names=["c", "z", "y", "x"],
        axes_types=["channel", "space", "space", "space"],
        axes_units=[None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[1.0, 0.5, 0.1, 0.1],
    )
    writer.write_full_volume(data)


def test_an_ome_zarr_is_read_with_its_axes_pixel_size_and_z_spacing(tmp_path):
    data = np.random.default_rng(0).poisson(50, (2, 3, 24, 24)).astype(np.float32)
    _ome_zarr(tmp_path / "cells.ome.zarr", data)
    image = read_image(tmp_path / "cells.ome.zarr")
    assert image.axes == "CZYX" and image.data.shape == data.shape
    assert image.pixel_size_um == pytest.approx((0.1, 0.1)) and image.z_spacing_um == pytest.approx(0.5)
    one = read_image(tmp_path / "cells.ome.zarr", channel=1)
    assert one.axes == "ZYX" and np.array_equal(one.data, data[1])
    assert expand_inputs([tmp_path]) == [tmp_path / "cells.ome.zarr"]
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "cells.ome.zarr"),
                "--model",
                "bicubic",
                "--channel",
                "0",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    mean = read_tiff(out / "cells.ome_mean.tif")
    assert mean.axes == "ZYX" and mean.data.shape == (3, 48, 48)
    assert mean.pixel_size_um == pytest.approx((0.05, 0.05)) and mean.z_spacing_um == pytest.approx(0.5)


def test_a_missing_reader_names_the_extra_to_install(tmp_path, monkeypatch):
    (tmp_path / "scan.czi").write_bytes(b"ZISRAWFILE")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bioio_czi" else real(name, *a))
    with pytest.raises(TiffReadError, match=r'pip install "napari-cvdm\[czi\]"'):
        read_image(tmp_path / "scan.czi")


def test_one_channel_is_chosen_or_the_choice_is_refused_in_words(tmp_path):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.float32), imagej=True, metadata={"axes": "CYX"})
    assert read_image(path, channel=1).axes == "YX"
    with pytest.raises(TiffReadError, match="has 2 channels"):
        read_image(path, channel=2)
    with pytest.raises(TiffReadError, match="no channel axis"):
        select_channel(read_image(path, channel=0), 0)


def test_axes_the_file_does_not_state_can_be_named(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(
        path, np.random.default_rng(0).poisson(50, (3, 24, 24)).astype(np.float32), photometric="minisblack"
    )
    assert read_image(path).axes != "TYX"  # a plain stack says nothing
    assert read_image(path, axes="tyx").axes == "TYX"
    with pytest.raises(TiffReadError, match="does not fit an image of shape"):
        read_image(path, axes="YX")
    out = tmp_path / "out"
    assert main(["predict", str(path), "--model", "bicubic", "--axes", "TYX", "--output-dir", str(out)]) == 0
    assert read_tiff(out / "movie_mean.tif").axes == "TYX"


def test_outputs_as_ome_zarr_keep_axes_scale_and_provenance(tmp_path, capsys):
    pytest.importorskip("bioio_ome_zarr", reason="the ome-zarr extra is not installed")
    import json

    import zarr

    path = tmp_path / "two.tif"
    data = np.random.default_rng(0).poisson(50, (2, 24, 24)).astype(np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(10.0, 10.0), metadata={"axes": "CYX", "unit": "um"})
    args = ["predict", str(path), "--model", "bicubic", "--output-format", "ome-zarr", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    mean = read_image(tmp_path / "two_mean.ome.zarr")
    assert mean.axes == "CYX" and mean.data.shape == (2, 48, 48)
    assert mean.pixel_size_um == pytest.approx((0.05, 0.05))
    made = json.loads(zarr.open_group(str(tmp_path / "two_std.ome.zarr")).attrs["napari_cvdm"])
    assert made["method"] == "bicubic"
    stamp = (tmp_path / "two_mean.ome.zarr").stat().st_mtime_ns
    assert main([*args, "--skip-existing"]) == 0  # the folders count as complete outputs: not written again
    assert (tmp_path / "two_mean.ome.zarr").stat().st_mtime_ns == stamp


def test_outputs_as_ome_tiff_keep_axes_pixel_size_z_spacing_and_provenance(tmp_path):
    import json

    path = tmp_path / "stack.tif"
    data = np.random.default_rng(0).poisson(50, (3, 24, 24)).astype(np.float32)
    meta = {"axes": "ZYX", "unit": "um", "spacing": 0.4}
    tifffile.imwrite(path, data, imagej=True, resolution=(10.0, 10.0), metadata=meta)
    args = ["predict", str(path), "--model", "bicubic", "--output-format", "ome-tiff", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    with tifffile.TiffFile(tmp_path / "stack_mean.ome.tif") as tif:
        assert tif.is_ome
    mean = read_tiff(tmp_path / "stack_mean.ome.tif")
    assert mean.axes == "ZYX" and mean.data.shape == (3, 48, 48)
    assert mean.pixel_size_um == pytest.approx((0.05, 0.05)) and mean.z_spacing_um == pytest.approx(0.4)
    assert json.loads(mean.info)["method"] == "bicubic"
