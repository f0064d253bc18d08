"""Plugins > CVDM > Reconstruct, sample data and the TIFF writer, in a real napari viewer (under Xvfb)."""

import time

import numpy as np
import pytest

from napari_cvdm._reader import read_layers
from napari_cvdm._sample_data import SAMPLE_SIZE, qpi_sample, sr_sample
from napari_cvdm._writer import write_image

pytest.importorskip("napari")


def _widget(viewer, model_file, samples=2, steps=2):
    from napari_cvdm._widgets import ReconstructWidget

    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruct")
    widget.add_model_file(model_file)
    widget.samples_spin.setValue(samples)
    widget.steps_spin.setValue(steps)
    return widget


def _run(qtbot, widget, timeout=60_000):
    widget.run()
    assert widget.worker is not None, "Run did not start"
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def _add(viewer, layers):
    for data, kwargs, _ in layers:
        viewer.add_image(data, **kwargs)


def test_sr_sample_gives_mean_and_std_at_half_the_pixel_size(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    _add(viewer, sr_sample())
    widget = _widget(viewer, model_files["sr"])
    widget.layer_box.setCurrentText("widefield")
    widget.samples_check.setChecked(True)
    widget.schedule_check.setChecked(True)
    _run(qtbot, widget)
    mean, std = viewer.layers["widefield CVDM mean"], viewer.layers["widefield CVDM std"]
    size = 2 * SAMPLE_SIZE
    assert mean.data.shape == std.data.shape == (size, size)
    assert mean.data.dtype == np.float32 and np.isfinite(mean.data).all() and (std.data >= 0).all()
    np.testing.assert_allclose(mean.scale, (0.0313, 0.0313))
    np.testing.assert_allclose(mean.translate, (-0.0626 / 4, -0.0626 / 4))
    # the output overlays the input: both cover the same field of view
    inp = viewer.layers["widefield"]
    lo_in = inp.translate - inp.scale / 2
    lo_out = mean.translate - mean.scale / 2
    np.testing.assert_allclose(lo_in, lo_out, atol=1e-9)
    np.testing.assert_allclose(lo_in + inp.scale * SAMPLE_SIZE, lo_out + mean.scale * size, atol=1e-9)
    assert std.colormap.name == "magma"
    assert viewer.layers["widefield CVDM samples"].data.shape == (2, size, size)
    assert viewer.layers["widefield CVDM schedule"].data.shape == (size, size)
    # the target of the sample overlays the result exactly
    np.testing.assert_allclose(viewer.layers["SIM-like target"].translate, mean.translate)


def test_qpi_from_one_two_plane_layer_and_from_two_layers(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    _add(viewer, qpi_sample())
    widget = _widget(viewer, model_files["qpi"])
    assert widget.second_box.isVisibleTo(widget)
    widget.layer_box.setCurrentText("brightfield ±1 µm")
    _run(qtbot, widget)
    mean = viewer.layers["brightfield ±1 µm CVDM mean"]
    assert mean.data.shape == (SAMPLE_SIZE, SAMPLE_SIZE)
    np.testing.assert_allclose(mean.scale, (0.21, 0.21))
    assert abs(float(mean.data.mean())) < 1e-4  # zero-mean phase

    pair = viewer.layers["brightfield ±1 µm"].data
    viewer.add_image(pair[0], name="minus", scale=(0.21, 0.21))
    viewer.add_image(pair[1], name="plus", scale=(0.21, 0.21))
    widget.layer_box.setCurrentText("minus")
    widget.second_box.setCurrentText("plus")
    _run(qtbot, widget)
    np.testing.assert_allclose(viewer.layers["minus CVDM mean"].data, mean.data, atol=1e-5)


def test_event_loop_keeps_running_during_a_run(make_napari_viewer, qtbot, model_files):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((192, 192)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=4, steps=30)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(50)
    t0 = time.perf_counter()
    _run(qtbot, widget)
    timer.stop()
    run_s = time.perf_counter() - t0
    gaps = np.diff([t0, *ticks])
    assert run_s > 0.5, "the run was too short to test responsiveness"
    assert gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.2f} s"
    assert "cells CVDM mean" in viewer.layers


def test_cancel_adds_nothing_and_stops_within_a_step(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((128, 128)).astype(np.float32), name="cells")
    before = [layer.name for layer in viewer.layers]
    widget = _widget(viewer, model_files["sr"], samples=2, steps=1000)
    widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=30_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert widget.progress_bar.value() < 100
    assert [layer.name for layer in viewer.layers] == before
    assert "cancelled" in widget.status.text()
    assert widget.run_button.isEnabled()


def test_second_run_updates_instead_of_duplicating_and_stacks_go_plane_by_plane(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(2).random((3, 40, 48)).astype(np.float32)
    viewer.add_image(stack, name="stack", scale=(0.3, 0.0626, 0.0626))
    widget = _widget(viewer, model_files["sr"])
    _run(qtbot, widget)
    mean = viewer.layers["stack CVDM mean"]
    assert mean.data.shape == (3, 80, 96)
    np.testing.assert_allclose(mean.scale, (0.3, 0.0313, 0.0313))
    first = mean.data.copy()
    widget.seed_spin.setValue(5)
    _run(qtbot, widget)
    assert len(viewer.layers) == 3
    assert viewer.layers["stack CVDM mean"] is mean
    assert not np.array_equal(mean.data, first)
    np.testing.assert_array_equal(viewer.layers["stack"].data, stack)  # the input is never touched
    widget.tile_spin.setValue(24)  # tiled: same shapes, finite
    _run(qtbot, widget)
    assert mean.data.shape == (3, 80, 96) and np.isfinite(mean.data).all()


def test_bad_inputs_become_notifications_and_add_nothing(make_napari_viewer, qtbot, model_files, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((64, 64)).astype(np.float32), name="one plane")
    nan_image = np.ones((64, 64), np.float32)
    nan_image[3, 4] = np.nan
    viewer.add_image(nan_image, name="with nan")
    viewer.add_image(np.zeros((8, 8), np.float32), name="tiny")
    before = [layer.name for layer in viewer.layers]

    qpi = _widget(viewer, model_files["qpi"])
    qpi.layer_box.setCurrentText("one plane")
    qpi.run()
    assert qpi.worker is None and "two defocused images" in errors[-1]

    sr = _widget(viewer, model_files["sr"])
    for name, words in (("with nan", "NaN"), ("tiny", "at least 16")):
        sr.layer_box.setCurrentText(name)
        sr.run()  # checked before any work starts
        assert sr.worker is None and words in errors[-1], errors[-1]
    assert [layer.name for layer in viewer.layers] == before


def test_a_failure_in_the_worker_becomes_a_notification(make_napari_viewer, qtbot, model_files, errors, monkeypatch):
    import napari_cvdm.models as models

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes")

    monkeypatch.setattr(models, "predict_image", out_of_memory)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    widget = _widget(viewer, model_files["sr"])
    _run(qtbot, widget)
    assert "not enough memory" in errors[-1] and "fewer samples" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]
    assert widget.run_button.isEnabled()


def test_layer_list_follows_the_viewer(make_napari_viewer, model_files):
    viewer = make_napari_viewer()
    widget = _widget(viewer, model_files["sr"])
    viewer.add_image(np.zeros((32, 32)), name="a")
    viewer.add_image(np.zeros((32, 32)), name="b")
    assert [widget.layer_box.itemText(i) for i in range(widget.layer_box.count())] == ["a", "b"]
    viewer.layers["a"].name = "renamed"
    del viewer.layers["b"]
    assert [widget.layer_box.itemText(i) for i in range(widget.layer_box.count())] == ["renamed"]


def test_session_models_appear_in_the_model_list(make_napari_viewer, model_files):
    from napari_cvdm._widgets._session import SESSION_MODELS

    viewer = make_napari_viewer()
    widget = _widget(viewer, model_files["sr"])
    SESSION_MODELS.add(model_files["sr"])
    items = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    assert f"{model_files['sr'].name} ({model_files['sr'].parent})" in items and items[:2] == ["sr", "qpi"]


def test_writer_keeps_pixel_size_through_the_reader(tmp_path):
    data, kwargs, _ = sr_sample()[1]
    meta = {"scale": kwargs["scale"], "units": ("micrometer", "micrometer"), "rgb": False}
    [path] = write_image(str(tmp_path / "target.tif"), data, meta)
    [(read, read_kwargs, _)] = read_layers(path)
    np.testing.assert_array_equal(read, data)
    np.testing.assert_allclose(read_kwargs["scale"], kwargs["scale"], rtol=1e-6)
    stack_meta = {"scale": (0.5, 0.1, 0.1), "units": ("pixel",) * 3, "rgb": False}
    [path] = write_image(str(tmp_path / "stack.tif"), np.zeros((2, 16, 16), np.uint16), stack_meta)
    np.testing.assert_allclose(read_layers(path)[0][1]["scale"], (0.5, 0.1, 0.1), rtol=1e-6)


def test_napari_saves_a_layer_with_our_writer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((20, 24), np.float32), name="img", scale=(0.05, 0.05), units=("µm", "µm"))
    [saved] = viewer.layers.save(str(tmp_path / "img.tif"), selected=False, plugin="napari-cvdm")
    np.testing.assert_allclose(read_layers(saved)[0][1]["scale"], (0.05, 0.05), rtol=1e-6)


def test_sample_data_from_the_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cvdm", "sr")
    viewer.open_sample("napari-cvdm", "qpi")
    assert viewer.layers["widefield"].data.shape == (SAMPLE_SIZE, SAMPLE_SIZE)
    assert viewer.layers["brightfield ±1 µm"].data.shape == (2, SAMPLE_SIZE, SAMPLE_SIZE)
    assert viewer.layers["phase (ground truth)"].data.shape == (SAMPLE_SIZE, SAMPLE_SIZE)
