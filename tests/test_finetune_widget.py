"""Plugins > CVDM > Fine-tune in a real napari viewer (under Xvfb), with a tiny model."""

import numpy as np
import pytest

from napari_cvdm.data.simulate import simulate_sr_pair
from napari_cvdm.data.tiff import write_tiff
from napari_cvdm.inference.models import load_model

pytest.importorskip("napari")


def _sr_pairs(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [simulate_sr_pair("microtubules", (size, size), 100.0, rng) for _ in range(n)]
    return np.stack([p.input for p in pairs]), np.stack([p.target for p in pairs])


def _widget(viewer, start_file, steps=6):
    from napari_cvdm._widgets import FineTuneWidget

    widget = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.add_start_file(start_file)
    widget.settings.steps_spin.setValue(steps)
    widget.settings.batch_spin.setValue(2)
    widget.settings.patch_spin.setValue(16)
    widget.settings.val_every_spin.setValue(3)
    widget.settings.val_fraction_spin.setValue(0.25)
    return widget


def test_fine_tune_from_layers_plots_previews_saves_and_shows_up_in_reconstruct(
    make_napari_viewer, qtbot, model_files, tmp_path
):
    from napari_cvdm._widgets import ReconstructWidget
    from napari_cvdm._widgets.finetune import PREVIEW_LAYER

    viewer = make_napari_viewer()
    inputs, targets = _sr_pairs(4)
    viewer.add_image(inputs, name="widefield stack")
    viewer.add_image(targets, name="SIM stack")
    reconstruct = ReconstructWidget(viewer)
    widget = _widget(viewer, model_files["sr"])
    widget.source_box.setCurrentIndex(0)
    widget.pages.input_box.setCurrentText("widefield stack")
    widget.pages.target_box.setCurrentText("SIM stack")
    widget.start()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.result is not None and widget.result.steps_done == 6
    assert [s for s, _ in widget.plots.losses] == list(range(1, 7))
    xs, ys = widget.plots.loss_curve.getData()
    assert len(xs) == 6 and np.all(np.isfinite(ys))
    assert [s for s, _ in widget.plots.psnrs] == [3, 6]
    assert widget.plots.psnr_curve.getData()[0].tolist() == [3.0, 6.0]
    assert viewer.layers[PREVIEW_LAYER].data.shape == (64, 64)
    path = widget.save(tmp_path / "my sr")
    model = load_model(path)
    assert model.task.name == "sr" and model.metadata["training"]["steps"] == 6
    assert model.metadata["training"]["lineage"][0]["name"] == "sr"
    assert model.metadata["training"]["data"]["layers"] == ["widefield stack", "SIM stack"]
    items = [reconstruct.model_box.itemText(i) for i in range(reconstruct.model_box.count())]
    assert f"my sr.safetensors ({tmp_path})" in items
    reconstruct.model_box.setCurrentText(f"my sr.safetensors ({tmp_path})")
    assert reconstruct.current_model().path == path


def test_fine_tune_from_a_folder_stops_when_asked_and_keeps_a_checkpoint(
    make_napari_viewer, qtbot, model_files, tmp_path
):
    inputs, targets = _sr_pairs(4, seed=1)
    for i, (a, b) in enumerate(zip(inputs, targets)):
        write_tiff(tmp_path / "pairs" / "inputs" / f"p{i}.tif", a)
        write_tiff(tmp_path / "pairs" / "targets" / f"p{i}.tif", b)
    viewer = make_napari_viewer()
    widget = _widget(viewer, model_files["sr"], steps=100_000)
    widget.source_box.setCurrentIndex(1)
    widget.pages.folder_edit.setText(str(tmp_path / "pairs"))
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plots.losses) >= 2, timeout=60_000)
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.result.stopped_early and widget.result.steps_done < 100
    first = widget.job.trainer.checkpoint
    assert first.exists()
    assert widget.save_button.isEnabled() and widget.start_button.isEnabled()
    widget.start()  # the next run's checkpoint goes to a new folder; the last run's is removed, not left in /tmp
    qtbot.waitUntil(lambda: len(widget.plots.losses) >= 1, timeout=60_000)
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.job.trainer.checkpoint.exists() and not first.parent.exists()


def test_fine_tune_qpi_on_simulated_optics(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    widget = _widget(viewer, model_files["qpi"], steps=2)
    widget.source_box.setCurrentIndex(2)
    boxes = widget.pages.optics_form.boxes
    assert "dz_um" in boxes and "na" not in boxes  # the form is the qpi optics class's
    boxes["wavelength_um"].setValue(0.6)
    boxes["dz_um"].setValue(2.0)
    widget.pages.n_pairs_spin.setValue(4)
    widget.settings.val_every_spin.setValue(100)
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.result.steps_done == 2
    assert widget.job.start.optics.dz_um == 2.0 and widget.job.start.optics.wavelength_um == 0.6


@pytest.mark.parametrize("case", ["mismatched", "same layer", "nan", "empty folder"])
def test_bad_training_data_gives_a_notification_and_starts_nothing(
    make_napari_viewer, model_files, errors, tmp_path, case
):
    viewer = make_napari_viewer()
    widget = _widget(viewer, model_files["sr"])
    inp = np.ones((32, 32), np.float32)
    tgt = np.ones((50, 50) if case == "mismatched" else (64, 64), np.float32)
    if case == "nan":
        tgt[1, 1] = np.nan
    viewer.add_image(inp, name="in")
    viewer.add_image(tgt, name="out")
    widget.pages.input_box.setCurrentText("in")
    widget.pages.target_box.setCurrentText("in" if case == "same layer" else "out")
    if case == "empty folder":
        (tmp_path / "inputs").mkdir()
        (tmp_path / "targets").mkdir()
        widget.source_box.setCurrentIndex(1)
        widget.pages.folder_edit.setText(str(tmp_path))
    before = [layer.name for layer in viewer.layers]
    widget.start()
    assert widget.worker is None
    expected = {"mismatched": "twice the input", "same layer": "same layer", "nan": "NaN", "empty folder": "inputs"}[
        case
    ]
    assert errors and expected in errors[-1], errors
    assert [layer.name for layer in viewer.layers] == before


def test_closing_the_viewer_stops_training_within_seconds(make_napari_viewer, qtbot, model_files, tmp_path):
    import time

    inputs, targets = _sr_pairs(4, seed=2)
    viewer = make_napari_viewer()
    viewer.add_image(inputs, name="in")
    viewer.add_image(targets, name="out")
    widget = _widget(viewer, model_files["sr"], steps=100_000)
    widget.pages.input_box.setCurrentText("in")
    widget.pages.target_box.setCurrentText("out")
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plots.losses) >= 2, timeout=60_000)
    worker, finished = widget.worker, []
    worker.finished.connect(lambda: finished.append(time.perf_counter()))
    t0 = time.perf_counter()
    viewer.close()
    qtbot.waitUntil(lambda: bool(finished), timeout=5_000)
    assert finished[0] - t0 < 5


def test_closing_the_panel_stops_training_and_offers_what_it_learned(make_napari_viewer, qtbot, model_files, tmp_path):
    import time

    viewer = make_napari_viewer()
    inputs, targets = _sr_pairs(4)
    viewer.add_image(inputs, name="widefield stack")
    viewer.add_image(targets, name="SIM stack")
    widget = _widget(viewer, model_files["sr"], steps=5000)
    widget.source_box.setCurrentIndex(0)
    widget.pages.input_box.setCurrentText("widefield stack")
    widget.pages.target_box.setCurrentText("SIM stack")
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plots.losses) >= 2, timeout=120_000)
    closed = time.perf_counter()
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5_000)
    assert time.perf_counter() - closed < 5 and widget.result.steps_done < 5000
    assert widget.offer.isVisible() and "Save the model trained so far" in widget.offer.text()
    assert load_model(widget.save(tmp_path / "kept")).task.name == "sr"
    widget.offer.close()


def test_fine_tune_opened_beside_reconstruct_goes_into_tabs_with_it_on_top(make_napari_viewer, qtbot):
    """Docked under Reconstruct, Fine-tune got about 100 pixels of a 1280×800 screen; beside it, it takes a tab."""
    from qtpy.QtWidgets import QDockWidget

    from napari_cvdm._widgets import FineTuneWidget, ReconstructWidget

    viewer = make_napari_viewer(show=True)
    viewer.window.add_dock_widget(ReconstructWidget(viewer), name="Reconstruct")
    fine_tune = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(fine_tune, name="Fine-tune")
    window = fine_tune.window()

    def dock(widget):
        parent = widget.parentWidget()
        while not isinstance(parent, QDockWidget):
            parent = parent.parentWidget()
        return parent

    qtbot.waitUntil(lambda: bool(window.tabifiedDockWidgets(dock(fine_tune))), timeout=5000)
    assert not fine_tune.visibleRegion().isEmpty()  # its tab is the one shown


def test_the_target_starts_on_another_layer_than_the_input(make_napari_viewer):
    from napari_cvdm._widgets import FineTuneWidget

    viewer = make_napari_viewer()
    widget = FineTuneWidget(viewer)  # opened before the images
    inputs, targets = _sr_pairs(1)
    viewer.add_image(inputs[0], name="widefield")
    viewer.add_image(targets[0], name="SIM")
    assert widget.pages.input_box.layer().name == "widefield" and widget.pages.target_box.layer().name == "SIM"
    assert FineTuneWidget(viewer).pages.target_box.layer().name == "SIM"  # opened after them


def test_the_training_fields_are_the_command_lines_options(make_napari_viewer, model_files):
    from napari_cvdm.physics.optics import field_help
    from napari_cvdm.training.job import TrainingRequest
    from napari_cvdm.training.train import TrainConfig

    widget = _widget(make_napari_viewer(), model_files["sr"], steps=40)
    settings = widget.settings
    for form, cls in ((settings.train_form, TrainConfig), (settings.run_form, TrainingRequest)):
        assert form.cls is cls and all(box.toolTip() == field_help(cls, n) != "" for n, box in form.boxes.items())
    settings.lr_spin.setValue(3e-4)
    config = settings.config()
    assert (config.steps, config.batch_size, config.patch_size, config.validate_every) == (40, 2, 16, 3)
    assert config.lr == pytest.approx(3e-4) and config.warmup_steps == 4 and settings.fraction() == 0.25


def test_empty_plots_show_readable_axes_and_follow_the_data_once_it_comes(qtbot):
    """Before the first step the plots show a loss of 0.001–1 and a PSNR of 20–40 dB (an empty plot's own range
    crowds its axis with labels); the first points give the range back to the data."""
    from napari_cvdm._widgets._training_parts import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.show()
    assert plots.loss_plot.viewRange()[1] == [-3, 0] and plots.psnr_plot.viewRange()[1] == [20, 40]
    plots.add_loss(1, 0.5)
    plots.add_psnr(1, 31.0)
    plots.add_psnr(2, 33.0)
    qtbot.waitUntil(lambda: 30 < plots.psnr_plot.viewRange()[1][0] < 31, timeout=2000)
    assert 33 < plots.psnr_plot.viewRange()[1][1] < 34
    plots.clear()
    assert plots.psnr_plot.viewRange()[1] == [20, 40]
