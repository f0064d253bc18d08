"""Plugins > CVDM > Fine-tune: train on image pairs from layers, a folder, or the user's own optics.

The widget builds the same :class:`~napari_cvdm.training.job.TrainingJob` as ``napari-cvdm train`` and runs it through a
:class:`~._runner.RunController`. Every step's loss is plotted live; every *validate every* steps the validation
PSNR is plotted and the first validation pair's reconstruction is shown as a layer. Stop ends after the current
step and keeps the best weights; Save writes a model file that appears at once in the Reconstruct widget.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..data.dataset import PairError
from ..inference.devices import resolve_device
from ..inference.layers import robust_limits
from ..inference.models import ModelFileError
from ..inference.predict import SamplingOptions, predict_image
from ..tasks import TASKS, Task, get_task
from ..training.job import TrainingJob, starting_point
from ..training.train import TrainProgress, TrainResult
from ._common import ModelPicker, preload
from ._docking import mark_as_panel, tab_beside_panels
from ._results import add_or_update
from ._runner import JobContext, RunController, RunState, format_eta
from ._session import SESSION_MODELS
from ._training_parts import SOURCES, PairSource, TrainingPlots, TrainSettings

__all__ = ["FineTuneWidget", "PREVIEW_LAYER"]

#: Name of the layer that shows the model's reconstruction of the first validation pair during training.
PREVIEW_LAYER = "CVDM fine-tune preview"


class FineTuneWidget(QWidget):
    """Fine-tune a CVDM model (or train a new one) from the viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._docked_once = False
        mark_as_panel(self)
        #: The question asked when the panel was closed mid-training (``None`` until then).
        self.offer: QMessageBox | None = None
        preload("torch._dynamo", "scipy.ndimage", "scipy.signal")
        self.job: TrainingJob | None = None
        self.result: TrainResult | None = None
        #: The running or last job's checkpoint and log; removed when the next job starts, the panel is collected
        #: or napari quits.
        self.workdir: tempfile.TemporaryDirectory[str] | None = None
        self.start_box = ModelPicker([(f"new {name} model", f"new:{name}") for name in TASKS], "Model to fine-tune")
        self.source_box = QComboBox()
        self.source_box.addItems(SOURCES)
        self.pages = PairSource(napari_viewer, exclude=(PREVIEW_LAYER,))
        self.settings = TrainSettings()
        self.start_button, self.stop_button = QPushButton("Start"), QPushButton("Stop")
        self.save_button = QPushButton("Save…")
        self.save_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plots = TrainingPlots()
        self.runner = RunController(self.start_button, self.stop_button, None, self.status, "CVDM fine-tuning")

        form = QFormLayout()
        form.addRow("Start from", self.start_box)
        form.addRow("Data", self.source_box)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        content = QWidget()
        layout = QVBoxLayout(content)
        for part in (form, self.pages, self.settings, buttons, self.status, self.plots):
            (layout.addWidget if isinstance(part, QWidget) else layout.addLayout)(part)
        scroll = QScrollArea()  # docked beside Reconstruct on a small screen, the plots scroll instead of the window
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        QVBoxLayout(self).addWidget(scroll)

        self.source_box.currentIndexChanged.connect(self.pages.setCurrentIndex)
        self.start_box.currentIndexChanged.connect(lambda _: self._on_start_changed())
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_dialog)
        self._on_start_changed()

    @property
    def worker(self) -> Any:
        """The running worker, or ``None``."""
        return self.runner.worker

    def add_start_file(self, path: str | Path) -> None:
        """Offer a model file as a starting point and choose it (a bad file is reported and not added)."""
        self.start_box.add_file(path)

    def _start(self) -> tuple[Task, str | Path | None, Any]:
        """``(task, start, optics)``: start is a bundled name, a file, or ``None`` for a new model."""
        value = self.start_box.currentData()
        if isinstance(value, str) and value.startswith("new:"):
            return get_task(value[4:]), None, get_task(value[4:]).default_optics()
        model = self.start_box.current_model(quiet=True)
        if model is None:
            raise ModelFileError("choose a model to start from")
        return model.task, str(value).removeprefix("file:"), model.optics

    def _on_start_changed(self) -> None:
        try:
            task, _, optics = self._start()
        except ModelFileError:
            return
        self.pages.optics_form.show_optics(optics)
        self.settings.patch_spin.setValue(task.patch_size)

    def _create_job(self) -> TrainingJob:
        """Everything checked before training: settings, data, starting model."""
        task, start, base = self._start()
        config = self.settings.config()
        optics = self.pages.optics(base)
        data = self.pages.data(task, config.seed, self.settings.fraction(), min(16, config.patch_size), optics)
        device = resolve_device(self.settings.device_box.currentText())
        self.workdir = tempfile.TemporaryDirectory(prefix="napari-cvdm-finetune-", ignore_cleanup_errors=True)
        workdir = Path(self.workdir.name)
        return TrainingJob.create(
            task,
            data,
            config,
            starting_point(task, start, optics, seed=config.seed),
            device,
            workdir / "run.ckpt.safetensors",
            workdir / "run.log.jsonl",
            validation=SamplingOptions(config.validation_samples, config.validation_steps, device=str(device)),
        )

    def start(self) -> None:
        """Check everything, then train in a worker thread (the Start button)."""
        if self.runner.running:
            return
        try:
            job = self._create_job()
        except (PairError, ValueError, OSError) as err:
            self.status.setText(f"not started: {err}")
            show_error(f"Fine-tune cannot start: {err}")
            return
        self.job, self.result = job, None
        self.plots.clear()
        self.save_button.setEnabled(False)
        preview_options = SamplingOptions(2, 10, device=str(job.trainer.device))

        def train(context: JobContext) -> TrainResult:
            preview = job.data.validation[0][0] if len(job.data.validation) else None  # may simulate: not in the GUI

            def callback(p: TrainProgress) -> bool:
                context.in_gui(self._on_step, p.step, p.total, float(p.loss["total"]))
                if p.val_psnr is not None and p.step % job.config.validate_every == 0:
                    context.in_gui(self.plots.add_psnr, p.step, float(p.val_psnr))
                    if preview is not None:
                        pred = predict_image(
                            job.trainer.ema, job.task, job.start.normalization, preview, preview_options
                        )
                        context.in_gui(self._on_preview, pred.mean)
                return context.keep_going()

            return job.run(callback)

        self.runner.start(
            train,
            self._on_done,
            f"training on {len(job.data.train)} pairs ({len(job.data.validation)} for validation)…",
        )

    def event(self, event: QEvent) -> bool:
        """Closing the panel (its ×) takes the widget out of the window: training stops after the current step,
        and what it learned is offered for saving (:meth:`_offer_to_save`). Shown the first time beside a docked
        Reconstruct panel, it goes into tabs with it (:func:`tab_beside_panels`)."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.runner.running:
            self.runner.stop("the panel was closed: stopping after this step…")
        if event.type() == QEvent.Type.Show and not self._docked_once:
            self._docked_once = True
            QTimer.singleShot(0, lambda: tab_beside_panels(self))  # once the window has placed the dock
        return super().event(event)

    def stop(self) -> None:
        """End training after the current step; the best weights so far are kept."""
        self.runner.stop("stopping after this step…")

    def _on_step(self, step: int, total: int, loss: float) -> None:
        self.plots.add_loss(step, loss)
        best = f" · best validation {max(p for _, p in self.plots.psnrs):.2f} dB" if self.plots.psnrs else ""
        if self.runner.state is RunState.RUNNING:
            self.status.setText(
                f"loss {loss:.4f} · {format_eta(step, total, self.runner.seconds_per_unit(step), 'steps')}{best}"
            )

    def _on_preview(self, mean: np.ndarray) -> None:
        px = self.job.task.output_pixel_size((self.job.start.optics.pixel_um,) * 2)
        kwargs = {
            "name": PREVIEW_LAYER,
            "colormap": "gray",
            "scale": px,
            "units": ("µm", "µm"),
            "contrast_limits": robust_limits(mean),
            "metadata": {"cvdm": {"kind": "preview"}},
        }
        add_or_update(self.viewer, mean, kwargs, owner=f"fine-tune/{id(self)}")

    def _on_done(self, result: TrainResult) -> None:
        self.result = result
        self.save_button.setEnabled(True)
        if self.parent() is None:  # its panel was closed during the run
            self._offer_to_save(result)
            return
        how = "stopped" if result.stopped_early else "finished"
        best = f"; best validation PSNR {result.best_val_psnr:.2f} dB" if result.best_val_psnr is not None else ""
        self.status.setText(
            f"{how} after {result.steps_done} step{'s' if result.steps_done != 1 else ''} in "
            f"{self.runner.elapsed():.0f} s{best}. "
            "Save the model to use it in Reconstruct."
        )

    def _offer_to_save(self, result: TrainResult) -> None:
        """Ask (without blocking the viewer) whether to save a model whose panel was closed mid-training."""
        self.offer = QMessageBox()
        self.offer.setWindowTitle("CVDM Fine-tune")
        self.offer.setText(
            f"Fine-tune stopped after {result.steps_done} steps when its panel was closed. Save the model trained "
            "so far? (Otherwise it is lost.)"
        )
        self.offer.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard)
        self.offer.button(QMessageBox.StandardButton.Save).clicked.connect(self._save_dialog)
        self.offer.setModal(False)
        self.offer.show()

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the CVDM model", "my-cvdm.safetensors", "CVDM models (*.safetensors)"
        )
        if path:
            self.save(path)

    def save(self, path: str | Path) -> Path | None:
        """Write the trained model (safetensors + metadata with lineage) and offer it in Reconstruct."""
        if self.result is None or self.job is None:
            show_error("train a model first")
            return None
        path = Path(path)
        if path.is_dir():
            show_error(f"{path} is a folder; choose a file name for the model (…/my-model.safetensors)")
            return None
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        try:
            self.job.save(path, self.result, "napari Fine-tune widget", name=path.stem)
        except OSError as err:
            show_error(f"could not write {path}: {err}")
            self.status.setText(f"not saved: {err}")
            return None
        SESSION_MODELS.add(path)
        show_info(f"saved {path}; it is now in Reconstruct's model list")
        self.status.setText(f"saved {path}")
        return path
