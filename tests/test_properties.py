"""Property-based tests (hypothesis) over shapes, dtypes and value ranges: normalisation, input checks, TIFF I/O."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_cvdm.data.tiff import read_tiff, write_tiff
from napari_cvdm.tasks import get_task
from napari_cvdm.tasks.sr import sr_affine

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])


def _image(dtype, shape):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    elements = (
        st.integers(int(info.min), int(info.max))
        if info is not None
        else st.floats(-(2.0**100), 2.0**100, allow_nan=False, allow_infinity=False, width=32)
    )
    return arrays(dtype, shape, elements=elements)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES, h=st.integers(16, 40), w=st.integers(16, 40))
def test_sr_normalisation_is_finite_and_invertible_for_any_dtype_and_range(data, dtype, h, w):
    image = data.draw(_image(dtype, (h, w)))
    sr = get_task("sr")
    planes = sr.check_input(image)  # integer types are widened, never wrapped
    assert planes.dtype == np.float64 and planes.shape == (1, h, w)
    np.testing.assert_array_equal(planes[0], image.astype(np.float64))
    offset, scale = sr_affine(planes[0], sr.default_normalization())
    assert np.isfinite(offset) and np.isfinite(scale) and scale > 0
    normalised = (planes[0] - offset) / scale
    assert np.isfinite(normalised).all()
    back = normalised * scale + offset
    np.testing.assert_allclose(back, planes[0], rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(planes).max())))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=5), task=st.sampled_from(["sr", "qpi"]))
def test_input_checks_accept_exactly_the_documented_shapes(shape, task):
    image = np.zeros(shape, np.float32)
    h_ok = len(shape) >= 2 and min(shape[-2:]) >= 16
    if task == "sr":
        shape_ok = len(shape) in (2, 3) and not (len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4)
    else:
        shape_ok = (len(shape) == 3 and shape[0] == 2) or (len(shape) == 4 and shape[1] == 2)
    if shape_ok and h_ok:
        planes = get_task(task).check_input(image)
        assert planes.shape[-2:] == tuple(shape[-2:])
    else:
        with pytest.raises(ValueError) as err:
            get_task(task).check_input(image)
        # the message names what is wrong: the shape it got, or the size it needs
        assert ("at least 16×16" if shape_ok else f"shape {tuple(shape)}") in str(err.value), str(err.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
    shape=st.sampled_from([(17, 23), (3, 16, 20), (2, 31, 18)]),
    pixel=st.floats(0.005, 5.0),
    z=st.floats(0.05, 10.0),
)
def test_tiff_round_trip_keeps_data_pixel_size_and_z_spacing(tmp_path, data, dtype, shape, pixel, z):
    image = data.draw(_image(dtype, shape))
    path = write_tiff(tmp_path / "img.tif", image, pixel_size_um=pixel, z_spacing_um=z if len(shape) == 3 else None)
    read = read_tiff(path)
    np.testing.assert_array_equal(read.data, image)
    assert read.data.dtype == image.dtype
    np.testing.assert_allclose(read.pixel_size_um, (pixel, pixel), rtol=1e-5)
    if len(shape) == 3:
        np.testing.assert_allclose(read.z_spacing_um, z, rtol=1e-5)
