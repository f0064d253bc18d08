"""Plugins > CVDM > Reconstruct, sample data and the TIFF writer, in a real napari viewer (under Xvfb)."""

import time
from pathlib import Path

import numpy as np
import pytest

from napari_cvdm._reader import read_layers
from napari_cvdm._sample_data import SAMPLE_SIZE, qpi_sample, sr_sample
from napari_cvdm._writer import write_image
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.data.tiff import read_tiff
from napari_cvdm.physics.fresnel import QPIOptics
from napari_cvdm.physics.tie import DEFAULT_TIE_REGULARIZATION, tie_phase

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
    """Run, wait for the result and for the layers added after the mean and std (one per event-loop turn)."""
    widget.run()
    assert widget.worker is not None, "Run did not start"
    qtbot.waitUntil(lambda: widget.worker is None and not widget.pending_layers, timeout=timeout)


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
    # the reconstruction is what is shown and selected; its std and residual are one click away
    assert mean.visible and not std.visible and viewer.layers.selection.active is mean
    assert viewer.layers["widefield CVDM samples"].data.shape == (2, size, size)
    assert viewer.layers["widefield CVDM schedule"].data.shape == (size, size)
    # the target of the sample overlays the result exactly
    np.testing.assert_allclose(viewer.layers["SIM-like target"].translate, mean.translate)
    # the residual lives on the input's grid, in noise units, with a diverging map centred on 0
    residual = viewer.layers["widefield CVDM residual"]
    assert residual.data.shape == inp.data.shape
    np.testing.assert_allclose(residual.scale, inp.scale)
    np.testing.assert_allclose(residual.translate, inp.translate)
    assert tuple(residual.contrast_limits) == (-3.0, 3.0) and residual.metadata["cvdm"]["rms"] > 0
    assert mean.metadata["cvdm"]["residual_rms"] == residual.metadata["cvdm"]["rms"]
    assert isinstance(mean.metadata["cvdm"]["warnings"], list)
    assert "the noise" in widget.status.text()


def test_qpi_from_one_two_plane_layer_and_from_two_layers(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    _add(viewer, qpi_sample())
    widget = _widget(viewer, model_files["qpi"])
    assert widget.second_box.isVisibleTo(widget)
    widget.layer_box.setCurrentText("brightfield ±1 µm")
    _run(qtbot, widget)
    mean = viewer.layers["brightfield ±1 µm CVDM mean"]
    assert viewer.layers.selection.active is mean and mean.colormap.name == "coolwarm"  # the phase in view
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
    # the pair's residual has its planes axis in front of the layers' grid
    two = viewer.layers["minus CVDM residual"]
    assert two.data.shape == (2, SAMPLE_SIZE, SAMPLE_SIZE)
    np.testing.assert_allclose(two.scale, (1.0, 0.21, 0.21))
    np.testing.assert_allclose(two.data, viewer.layers["brightfield ±1 µm CVDM residual"].data, atol=1e-3)


def test_event_loop_keeps_running_during_a_run(make_napari_viewer, qtbot, model_files):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((192, 192)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=4, steps=30)
    ticks, arrived = [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    viewer.layers.events.inserted.connect(lambda event: arrived.append(time.perf_counter()))
    timer.start(20)
    widget.run()  # the click itself (checking the input, settling the collector) is not timed
    t0 = time.perf_counter()
    qtbot.waitUntil(lambda: widget.worker is None and not widget.pending_layers, timeout=60_000)
    qtbot.wait(300)  # the last layers drawn
    timer.stop()
    run_s = time.perf_counter() - t0
    gaps = np.diff([t0, *ticks])
    assert run_s > 0.5 and arrived, "the run was too short to test responsiveness"
    assert gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.2f} s at tick {gaps.argmax()} of {len(gaps)}"
    while_arriving = gaps[np.asarray(ticks) > arrived[0]]
    assert while_arriving.max() < 0.25, f"results froze the window for {while_arriving.max():.2f} s"
    assert "cells CVDM mean" in viewer.layers


def test_the_sampler_waits_while_the_gui_adds_layers_and_a_run_starts_with_the_collector_settled(qtbot):
    import gc
    import threading

    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton

    from napari_cvdm._widgets import _runner

    runner = _runner.RunController(QPushButton(), QPushButton(), QProgressBar(), QLabel(), "test")
    events = []

    def add_layers(tag):  # the mean now, the std a turn later
        events.append(f"mean {tag}")
        QTimer.singleShot(_runner.TURN_MS, lambda: events.append(f"std {tag}"))

    def job(context):
        for tag in range(3):
            context.in_gui_and_wait(add_layers, tag)
            events.append(f"sampling on after {tag} ({threading.current_thread() is threading.main_thread()})")
        return len(events)

    gc.unfreeze()
    runner.start(job, lambda result: None, "test")
    assert gc.get_freeze_count() > 0  # the objects alive when the run started are left out of full collections
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert events == [e for t in range(3) for e in (f"mean {t}", f"std {t}", f"sampling on after {t} (False)")]


def test_cancel_adds_nothing_and_stops_within_a_step(make_napari_viewer, qtbot, model_files):
    from napari_cvdm._widgets._runner import RunState

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((128, 128)).astype(np.float32), name="cells")
    before = [layer.name for layer in viewer.layers]
    widget = _widget(viewer, model_files["sr"], samples=2, steps=1000)
    widget.run()
    assert widget.runner.state is RunState.RUNNING
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=30_000)
    widget.cancel()
    widget.stop_and_keep()  # too late: a cancelled run keeps nothing
    assert widget.runner.state is RunState.STOPPING
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert widget.progress_bar.value() < 100
    assert [layer.name for layer in viewer.layers] == before
    assert "cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and widget.runner.state is RunState.IDLE


def test_the_sampling_fields_are_the_command_lines_options(make_napari_viewer, model_files):
    from napari_cvdm.inference.predict import SamplingOptions
    from napari_cvdm.physics.optics import field_help

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((64, 64)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=3, steps=5)
    form = widget.sampling_form
    assert form.cls is SamplingOptions and list(form.boxes) == ["n_samples", "steps", "seed", "device", "tile_size"]
    assert all(box.toolTip() == field_help(SamplingOptions, name) != "" for name, box in form.boxes.items())
    assert widget.tile_spin.text() == "auto" and widget.job().options == SamplingOptions(3, 5, progressive=True)
    widget.tile_spin.setValue(256)
    widget.seed_spin.setValue(7)
    assert widget.job().options == SamplingOptions(3, 5, 7, "auto", 256, progressive=True)


def test_second_run_updates_instead_of_duplicating_and_stacks_go_plane_by_plane(
    make_napari_viewer, qtbot, model_files, errors
):
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
    assert len(viewer.layers) == 4  # the input, mean, std and residual: refreshed, not duplicated
    assert viewer.layers["stack CVDM mean"] is mean
    assert not np.array_equal(mean.data, first)
    np.testing.assert_array_equal(viewer.layers["stack"].data, stack)  # the input is never touched
    widget.tile_spin.setValue(24)  # tiles this small are mostly overlap: refused with the reason
    widget.run()
    assert widget.worker is None and "at least 64" in errors[-1]
    viewer.add_image(np.random.default_rng(5).random((72, 140)).astype(np.float32), name="wide")
    widget.layer_box.setCurrentText("wide")
    widget.tile_spin.setValue(64)  # tiled: same shape as untiled, finite
    _run(qtbot, widget)
    tiled = viewer.layers["wide CVDM mean"].data
    assert tiled.shape == (144, 280) and np.isfinite(tiled).all()


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
    import napari_cvdm.inference.models as models

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


def test_closing_the_viewer_mid_run_stops_the_run_and_adds_nothing(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(4).random((128, 128)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=2, steps=1000)
    widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=30_000)
    worker, finished, inserted = widget.worker, [], []
    worker.finished.connect(lambda: finished.append(time.perf_counter()))
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value.name))
    t0 = time.perf_counter()
    viewer.close()  # napari asks the worker to quit; the widget's buttons are destroyed
    qtbot.waitUntil(lambda: bool(finished), timeout=5_000)
    assert finished[0] - t0 < 5 and widget.runner.stopping
    qtbot.wait(200)
    assert inserted == []  # nothing was added


def test_two_widgets_keep_two_result_sets_and_never_replace_other_layers(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    _add(viewer, qpi_sample())
    qpi = _widget(viewer, model_files["qpi"])
    qpi.layer_box.setCurrentText("brightfield ±1 µm")
    _run(qtbot, qpi)
    phase = viewer.layers["brightfield ±1 µm CVDM mean"]
    sr = _widget(viewer, model_files["sr"])  # an sr model on the brightfield pair: warned, and a new layer
    sr.layer_box.setCurrentText("brightfield ±1 µm")
    _run(qtbot, sr)
    assert phase.data.shape == (SAMPLE_SIZE, SAMPLE_SIZE) and viewer.layers[phase.name] is phase
    assert len([layer for layer in viewer.layers if layer.name.startswith("brightfield ±1 µm CVDM mean")]) == 2
    a, b = _widget(viewer, model_files["qpi"]), _widget(viewer, model_files["qpi"])
    for widget, seed in ((a, 0), (b, 7)):
        widget.layer_box.setCurrentText("brightfield ±1 µm")
        widget.seed_spin.setValue(seed)
        widget.run()
    qtbot.waitUntil(lambda: not any(w.worker or w.pending_layers for w in (a, b)), timeout=60_000)
    means = [layer for layer in viewer.layers if layer.name.startswith("brightfield ±1 µm CVDM mean")]
    assert len(means) == 4 and viewer.layers[phase.name] is phase


def test_three_runs_of_two_models_leave_one_named_result_set_per_model(
    make_napari_viewer, qtbot, model_files, tmp_path
):
    from napari_cvdm.inference.models import load_model, save_model

    base = load_model(model_files["sr"])
    tuned = save_model(
        tmp_path / "sr-finetuned.safetensors",
        base.network,
        base.task,
        base.normalization,
        base.optics,
        {"steps": 0},
        default_steps=2,
        name="sr-finetuned",
    )
    viewer = make_napari_viewer()
    viewer.add_image(sr_sample()[0][0], name="widefield", scale=(0.0626, 0.0626))
    widget = _widget(viewer, model_files["sr"])
    bundled_key = widget.model_box.currentData()
    widget.add_model_file(tuned)
    tuned_key = widget.model_box.currentData()
    for key in (bundled_key, tuned_key, bundled_key):
        widget.model_box.setCurrentIndex(widget.model_box.findData(key))
        widget.layer_box.setCurrentText("widefield")
        _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert sorted(names) == sorted(
        ["widefield"]
        + [
            f"widefield {label} {part}"
            for label in ("CVDM", "CVDM sr-finetuned")
            for part in ("mean", "std", "residual")
        ]
    ), names
    assert viewer.layers.selection.active is viewer.layers["widefield CVDM mean"]  # the last run's result


def test_the_same_layer_for_both_planes_is_refused(make_napari_viewer, model_files, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((64, 64), np.float32), name="minus")
    widget = _widget(viewer, model_files["qpi"])
    widget.layer_box.setCurrentText("minus")
    widget.second_box.setCurrentText("minus")
    widget.run()
    assert widget.worker is None and "both −dz and +dz" in errors[-1]
    assert "not started" in widget.status.text()


def test_a_model_saved_as_sr_is_listed_by_file_and_never_hides_the_bundled_sr(
    make_napari_viewer, model_files, tmp_path
):
    import shutil

    from napari_cvdm.inference.models import bundled_model_path

    viewer = make_napari_viewer()
    fake = tmp_path / "sr.safetensors"
    shutil.copy(model_files["sr"], fake)
    widget = _widget(viewer, fake)
    items = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    assert items.count("sr") == 1 and f"sr.safetensors ({tmp_path})" in items
    assert widget.current_model().path == fake.resolve()
    widget.model_box.setCurrentText("sr")
    assert widget.current_model().path == bundled_model_path("sr")


def test_renaming_the_chosen_layer_keeps_it_chosen(make_napari_viewer, model_files):
    viewer = make_napari_viewer()
    for name in ("a", "b", "c"):
        viewer.add_image(np.zeros((32, 32)), name=name)
    widget = _widget(viewer, model_files["sr"])
    widget.layer_box.setCurrentText("b")
    viewer.layers["b"].name = "b renamed"
    assert widget.layer_box.currentText() == "b renamed"
    viewer.layers.move(2, 0)
    assert widget.layer_box.currentText() == "b renamed"


def test_classical_methods_are_listed_beside_the_models_and_named_after_themselves(
    make_napari_viewer, qtbot, model_files
):
    """Users compare CVDM with the physics on their own data: TIE and iterative retrieval for a pair."""
    viewer = make_napari_viewer()
    _add(viewer, qpi_sample())
    widget = _widget(viewer, model_files["qpi"])
    texts = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    assert any(t.startswith("TIE") for t in texts) and any(t.startswith("richardson-lucy") for t in texts)
    widget.model_box.setCurrentIndex(next(i for i, t in enumerate(texts) if t.startswith("iterative")))
    assert not widget.samples_spin.isEnabled() and not widget.steps_spin.isEnabled()
    assert widget.optics_form.isVisibleTo(widget) and widget.optics_form.optics() == QPIOptics()
    widget.layer_box.setCurrentText("brightfield ±1 µm")
    widget.run()
    assert widget.cancel_button.isEnabled() and not widget.keep_button.isEnabled()  # nothing to keep early
    qtbot.waitUntil(lambda: widget.worker is None and not widget.pending_layers, timeout=60_000)
    widget.model_box.setCurrentIndex(next(i for i, t in enumerate(texts) if t.startswith("TIE")))
    _run(qtbot, widget)
    truth = viewer.layers["phase (ground truth)"].data
    assert "brightfield ±1 µm TIE std" not in viewer.layers  # a classical method has no spread to show
    tie_layer = viewer.layers["brightfield ±1 µm TIE mean"]
    assert viewer.layers.selection.active is tie_layer and tie_layer.colormap.name == "coolwarm"
    low, high = tie_layer.contrast_limits  # a diverging map centred on the medium's phase
    assert (low + high) / 2 == pytest.approx(np.median(tie_layer.data), abs=1e-4)
    iterative, tie = (viewer.layers[f"brightfield ±1 µm {m} mean"].data for m in ("iterative", "TIE"))
    better, worse = qpi_scores(iterative, truth), qpi_scores(tie, truth)
    assert better.psnr > worse.psnr and better.ssim > worse.ssim + 0.05  # dense cells: low modes dominate PSNR
    widget.optics_form.boxes["dz_um"].setValue(2.0)  # the user's optics reach the classical method
    _run(qtbot, widget)
    pair = viewer.layers["brightfield ±1 µm"].data
    expected = tie_phase(pair[0], pair[1], 2.0, 0.521, 0.21, DEFAULT_TIE_REGULARIZATION)
    np.testing.assert_allclose(viewer.layers["brightfield ±1 µm TIE mean"].data, expected, atol=1e-5)
    assert viewer.layers["brightfield ±1 µm iterative residual"].metadata["cvdm"]["rms"] < 1.5
    widget.model_box.setCurrentIndex(texts.index("qpi"))
    assert widget.samples_spin.isEnabled() and widget.optics_form.optics() == widget.current_model().optics
    assert widget.job().model.inner.model is widget.current_model()  # its own optics: the model (taking planes)
    widget.optics_form.boxes["dz_um"].setValue(2.0)  # another defocus: the model by Fresnel similarity
    job = widget.job()
    assert job.model.inner.for_image(job.data.pair).scale == pytest.approx(0.5**0.5)
    widget.optics_form.boxes["dz_um"].setValue(1.0)  # the form back at the model's: the layer's planes decide
    viewer.layers["brightfield ±1 µm"].scale = (4.0, 0.21, 0.21)  # planes 4 µm apart: at ±2 µm
    job = widget.job()
    assert job.data.dz_um == 2.0 and job.model.inner.for_image(job.data.pair).optics.dz_um == 2.0


def test_the_optics_form_says_what_the_model_takes_from_the_layer_before_it_runs(make_napari_viewer, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((3, 32, 32), np.float32), name="stack", scale=(2.0, 0.3, 0.3), units=("µm",) * 3)
    widget = _widget(viewer, model_files["qpi"])
    widget.layer_box.setCurrentText("stack")
    assert widget.current_model().task.name == "qpi"
    said = "The layer states pixels of 300.0 nm and planes at ±2 µm: the model runs at them, the rest as above."
    assert widget.optics_note.text() == said
    widget.optics_form.boxes["dz_um"].setValue(1.5)  # the user's dz wins; the layer's pixel size still fills in
    assert "the model runs at pixels of 300.0 nm, the rest as above" in widget.optics_note.text()
    viewer.add_image(np.ones((2, 32, 32), np.float32), name="pair in pixels")
    widget.layer_box.setCurrentText("pair in pixels")
    assert "states no pixel size" in widget.optics_note.text()
    viewer.layers["pair in pixels"].scale = (1.0, 60.0, 60.0)  # nm taken for µm: told before the run
    viewer.layers["pair in pixels"].units = ("µm",) * 3
    widget.layer_box.setCurrentText("stack")
    widget.layer_box.setCurrentText("pair in pixels")
    assert "cannot be" in widget.optics_note.text() and "look like nm" in widget.optics_note.text()
    texts = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    widget.model_box.setCurrentIndex(next(i for i, t in enumerate(texts) if t.startswith("TIE")))
    assert widget.optics_note.text() == ""  # a classical method runs at the form's optics: nothing to say


def test_running_results_appear_during_the_run_and_stop_and_keep_keeps_them(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).random((64, 64)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=8, steps=400)
    widget.run()
    qtbot.waitUntil(lambda: "cells CVDM std" in viewer.layers, timeout=60_000)
    assert widget.worker is not None, "the running result should appear before the run ends"
    assert "2 of 8 samples" in widget.status.text() and widget.keep_button.isEnabled()
    assert viewer.layers.selection.active is viewer.layers["cells CVDM mean"]  # the running mean, not its std
    widget.stop_and_keep()
    qtbot.waitUntil(lambda: widget.worker is None and not widget.pending_layers, timeout=30_000)
    mean = viewer.layers["cells CVDM mean"]
    assert mean.data.shape == (128, 128) and np.isfinite(mean.data).all()
    assert any("after 2 of 8 samples" in w for w in mean.metadata["cvdm"]["warnings"])
    assert "done" in widget.status.text()


def test_cancel_removes_the_running_result(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((64, 64)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=8, steps=400)
    widget.run()
    qtbot.waitUntil(lambda: "cells CVDM std" in viewer.layers, timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert "removed" in widget.status.text()


def test_closing_the_panel_stops_the_run_and_adds_nothing(make_napari_viewer, qtbot, model_files):
    """The panel's × takes the widget out of the window (napari keeps the object): the run must not go on."""
    import time

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(4).random((64, 64)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=8, steps=400)
    widget.run()
    qtbot.waitUntil(lambda: "cells CVDM mean" in viewer.layers, timeout=60_000)  # a running result is shown
    closed = time.perf_counter()
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5_000)
    assert time.perf_counter() - closed < 5
    for _ in range(5):
        qtbot.wait(20)
    assert [layer.name for layer in viewer.layers] == ["cells"]


def test_stop_and_keep_before_the_first_samples_are_finished_stops_at_once(make_napari_viewer, qtbot, model_files):
    import time

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(5).random((64, 64)).astype(np.float32), name="cells")
    widget = _widget(viewer, model_files["sr"], samples=8, steps=2000)
    widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=30_000)
    assert "cells CVDM mean" not in viewer.layers  # no round finished yet
    pressed = time.perf_counter()
    widget.stop_and_keep()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert time.perf_counter() - pressed < 10
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert "before the first samples were finished" in widget.status.text()


def test_time_left_is_measured_from_the_first_report_not_from_the_start(qtbot, monkeypatch):
    """Loading and the image's schedule come before the first pass: counting them made the first estimates ~10×
    too long."""
    from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton

    from napari_cvdm._widgets import _runner

    clock = iter([110.0, 112.0])  # started at 100 s, preparing took 10 s; then a pass every 2 s
    monkeypatch.setattr(_runner.time, "perf_counter", lambda: next(clock))
    runner = _runner.RunController(QPushButton(), QPushButton(), QProgressBar(), QLabel(), "test")
    runner._t0 = 100.0
    assert runner.seconds_per_unit(1) is None  # the first report: nothing measured yet
    assert runner.seconds_per_unit(2) == pytest.approx(2.0)
    assert _runner.format_eta(2, 12, 2.0) == "about 20 s left (2 of 12 denoiser passes)"
    assert _runner.format_eta(2, 12, None) == "2 of 12 denoiser passes"


def test_selected_result_layers_save_to_a_folder_with_their_pixel_size(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    for name in ("w CVDM mean", "w CVDM std"):
        viewer.add_image(np.ones((8, 8), np.float32), name=name, scale=(0.0313, 0.0313), units=("µm", "µm"))
    viewer.layers.selection.update(viewer.layers)
    written = viewer.layers.save(str(tmp_path / "results"), selected=True, plugin="napari-cvdm")
    assert sorted(Path(p).name for p in written) == ["w CVDM mean.tif", "w CVDM std.tif"]
    assert read_tiff(tmp_path / "results" / "w CVDM std.tif").pixel_size_um == pytest.approx((0.0313, 0.0313))


def test_one_notice_per_run_however_many_remarks(make_napari_viewer, qtbot, model_files, monkeypatch):
    import napari_cvdm._widgets._results as module

    shown = []
    monkeypatch.setattr(module, "show_warning", shown.append)
    viewer = make_napari_viewer()
    binned = np.kron(np.random.default_rng(6).poisson(50, (32, 32)), np.ones((2, 2))).astype(np.float32)
    viewer.add_image(binned, name="binned")  # undersampled for the model, and not explained by its result
    widget = _widget(viewer, model_files["sr"])
    _run(qtbot, widget)
    remarks = viewer.layers["binned CVDM mean"].metadata["cvdm"]["warnings"]
    assert len(remarks) >= 2 and len(shown) == 1 and all(r in shown[0] for r in remarks)


def test_another_reconstruct_panel_opens_beside_the_first(make_napari_viewer):
    viewer = make_napari_viewer()
    _, first = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    second = first.open_another()
    third = first.open_another()
    assert second is not first and third is not second
    docked = set(viewer.window.dock_widgets)
    assert {"Reconstruct 2", "Reconstruct 3"} <= docked


def test_a_through_focus_stack_layer_runs_on_its_outer_pair_and_raw_counts_are_refused(
    make_napari_viewer, qtbot, model_files
):
    viewer = make_napari_viewer()
    _add(viewer, qpi_sample())
    pair = viewer.layers["brightfield ±1 µm"].data
    viewer.add_image(np.stack([pair[0], (pair[0] + pair[1]) / 2, pair[1]]), name="stack")
    viewer.add_image(pair * 20000.0, name="raw counts")
    widget = _widget(viewer, model_files["qpi"])
    texts = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    widget.model_box.setCurrentIndex(next(i for i, t in enumerate(texts) if t.startswith("TIE")))
    widget.layer_box.setCurrentText("raw counts")
    with pytest.raises(ValueError, match="raw camera counts"):
        widget.job()
    widget.layer_box.setCurrentText("stack")
    _run(qtbot, widget)
    mean = viewer.layers["stack TIE mean"]
    np.testing.assert_allclose(mean.data, tie_phase(pair[0], pair[1], 1.0, 0.521, 0.21), atol=1e-5)
    assert any("outer pair" in w for w in mean.metadata["cvdm"]["warnings"])
    viewer.add_image(np.full(pair.shape[-2:], 20000.0, np.float32), name="empty field")
    widget.layer_box.setCurrentText("raw counts")
    widget.flat_box.setCurrentText("empty field")  # raw counts divided by the empty field given
    _run(qtbot, widget)
    divided = viewer.layers["raw counts TIE mean"]
    np.testing.assert_allclose(divided.data, mean.data, atol=1e-4)
    assert any("empty field given" in w for w in divided.metadata["cvdm"]["warnings"])
    widget.flat_box.setCurrentIndex(1)  # or by an illumination fitted to the planes
    _run(qtbot, widget)
    assert any("estimated from the planes" in w for w in divided.metadata["cvdm"]["warnings"])
    assert widget.flat_box.isVisibleTo(widget)
    widget.model_box.setCurrentIndex(texts.index("sr"))
    assert not widget.flat_box.isVisibleTo(widget)  # widefield images have no empty field to give
