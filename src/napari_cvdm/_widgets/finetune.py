"""Plugins > CVDM > Fine-tune: train on image pairs from layers, a folder, or the user's own optics.

The widget calls the same trainer as ``napari-cvdm train`` (:class:`napari_cvdm.train.Trainer` and the
helpers next to it) in a worker thread. Every step's loss crosses to the GUI thread through a Qt signal and
is drawn in a live plot (pyqtgraph); every ``validate every`` steps the validation PSNR is plotted and a
preview of the first validation pair is shown as a layer. Stop ends after the current step and keeps the
best weights; Save writes a model file that appears at once in the Reconstruct widget.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..data.dataset import ArrayPairs, FolderPairs, PairError
from ..data.normalize import default_normalization
from ..data.simulate import QPIOptics
from ..layers import robust_limits
from ..models import CVDMModel, ModelFileError, load_model, save_model
from ..physics.widefield import WidefieldOptics
from ..predict import available_devices, predict_image, resolve_device
from ..train import (
    TrainConfig,
    Trainer,
    TrainProgress,
    TrainResult,
    default_network_config,
    simulated_training_data,
    split_validation,
    starting_network,
    training_record,
)
from ._common import CHOOSE_FILE, Failure, catching, float_spin, int_spin, offer_model_file, refill
from ._session import SESSION_MODELS

__all__ = ["FineTuneWidget", "PREVIEW_LAYER"]

#: Name of the layer that shows the model's reconstruction of the first validation pair during training.
PREVIEW_LAYER = "CVDM fine-tune preview"
_STARTS = {"bundled sr": ("sr", "sr"), "bundled qpi": ("qpi", "qpi"), "new sr model": ("sr", None),
           "new qpi model": ("qpi", None)}
_SOURCES = ("image layers", "folder (inputs/ + targets/)", "simulated from optics")


class _Signals(QObject):
    """Carries training progress from the worker thread to the GUI thread."""

    step = Signal(int, int, float)  # step, total, loss
    validated = Signal(int, float)  # step, PSNR (dB)
    preview = Signal(object)  # mean image of the first validation pair


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
        self.worker = None
        self.result: TrainResult | None = None
        self._job: dict[str, Any] = {}
        self._stop = threading.Event()
        self._files: dict[str, tuple[Path, str]] = {}  # name → (model file, its task), read once
        self._losses: list[tuple[int, float]] = []
        self._psnrs: list[tuple[int, float]] = []
        self._signals = _Signals()
        self._signals.step.connect(self._on_step)
        self._signals.validated.connect(self._on_validated)
        self._signals.preview.connect(self._on_preview)

        self.start_box = QComboBox()
        self.source_box = QComboBox()
        self.source_box.addItems(_SOURCES)
        self.pages = QStackedWidget()
        self.input_box, self.target_box = QComboBox(), QComboBox()
        layers_page = self._form(("Input", self.input_box), ("Target", self.target_box))
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder with inputs/ and targets/")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        folder_page = QWidget()
        folder_page.setLayout(row)
        self.na_spin = float_spin(0.1, 1.7, 1.3, 2, "numerical aperture of the objective (sr)")
        self.wavelength_spin = float_spin(0.2, 2.0, 0.525, 3, "emission (sr) or illumination (qpi) wavelength, µm")
        self.pixel_spin = float_spin(0.005, 50.0, 0.0626, 4, "camera pixel size at the sample, µm")
        self.dz_spin = float_spin(0.05, 100.0, 1.0, 2, "defocus distance of the two planes (±dz), µm (qpi)")
        self.n_pairs_spin = int_spin(4, 100000, 200, "number of simulated pairs")
        self.optics_form = QFormLayout()
        for label, box in (("NA", self.na_spin), ("wavelength (µm)", self.wavelength_spin),
                           ("pixel size (µm)", self.pixel_spin), ("dz (µm)", self.dz_spin),
                           ("pairs", self.n_pairs_spin)):
            self.optics_form.addRow(label, box)
        optics_page = QWidget()
        optics_page.setLayout(self.optics_form)
        for page in (layers_page, folder_page, optics_page):
            self.pages.addWidget(page)

        self.steps_spin = int_spin(1, 1_000_000, 300, "optimizer steps")
        self.lr_spin = float_spin(1e-6, 1e-1, 2e-4, 6, "AdamW learning rate (fine-tuning: 1e-4 to 3e-4)")
        self.batch_spin = int_spin(1, 256, 8, "pairs per step")
        self.patch_spin = int_spin(16, 1024, 48, "patch side on the input grid, pixels")
        self.val_fraction_spin = float_spin(0.0, 0.9, 0.1, 2, "share of the pairs held out for validation")
        self.val_every_spin = int_spin(1, 100000, 50, "steps between validations and preview updates")
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", *available_devices()])

        self.start_button, self.stop_button = QPushButton("Start"), QPushButton("Stop")
        self.save_button = QPushButton("Save…")
        self.stop_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.loss_plot = pg.PlotWidget(title="training loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#4fc3f7", width=1))
        self.psnr_plot = pg.PlotWidget(title="validation PSNR (dB)")
        self.psnr_plot.setLabel("bottom", "step")
        self.psnr_curve = self.psnr_plot.plot([], [], pen=pg.mkPen("#ffb74d", width=2), symbol="o", symbolSize=6)
        for plot in (self.loss_plot, self.psnr_plot):
            plot.setMinimumHeight(140)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Start from", self.start_box)
        form.addRow("Data", self.source_box)
        settings = QFormLayout()
        for label, box in (("Steps", self.steps_spin), ("Learning rate", self.lr_spin),
                           ("Batch size", self.batch_spin), ("Patch size", self.patch_spin),
                           ("Validation fraction", self.val_fraction_spin), ("Validate every", self.val_every_spin),
                           ("Device", self.device_box)):
            settings.addRow(label, box)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.pages)
        layout.addLayout(settings)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.psnr_plot)

        self.source_box.currentIndexChanged.connect(self.pages.setCurrentIndex)
        self.start_box.activated.connect(self._on_start_activated)
        self.start_box.currentTextChanged.connect(self._on_start_changed)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_dialog)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._refresh_starts()

    # ------------------------------------------------------------------ building blocks

    @staticmethod
    def _form(*rows: tuple[str, QWidget]) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        for label, box in rows:
            form.addRow(label, box)
        return page

    def _refresh_layers(self, event: Any = None) -> None:
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)
                 and layer.name != PREVIEW_LAYER]
        refill(self.input_box, names)
        refill(self.target_box, names)

    def _refresh_starts(self) -> None:
        refill(self.start_box, [*_STARTS, *self._files, CHOOSE_FILE])
        self._on_start_changed(self.start_box.currentText())

    def _on_start_activated(self, index: int) -> None:
        offer_model_file(self, self.start_box, index, "Model to fine-tune", self.add_start_file)

    def add_start_file(self, path: str | Path) -> None:
        """Offer a model file as a starting point and select it (a bad file is reported and not added)."""
        try:
            task = load_model(path).task
        except ModelFileError as err:
            show_error(str(err))
            return
        self._files[Path(path).stem] = (Path(path), task)
        self._refresh_starts()
        self.start_box.setCurrentText(Path(path).stem)

    def _start(self) -> tuple[str, str | Path | None]:
        """``(task, start)`` of the selected entry: start is ``"sr"``, ``"qpi"``, a file or ``None`` (new)."""
        name = self.start_box.currentText()
        if name in _STARTS:
            return _STARTS[name]
        path, task = self._files[name]
        return task, path

    def _on_start_changed(self, name: str) -> None:
        if not name or name == CHOOSE_FILE:
            return
        task, _ = self._start()
        is_sr = task == "sr"
        for box, visible in ((self.na_spin, is_sr), (self.dz_spin, not is_sr)):
            box.setVisible(visible)
            self.optics_form.labelForField(box).setVisible(visible)
        optics = WidefieldOptics() if is_sr else QPIOptics()
        self.wavelength_spin.setValue(optics.wavelength_um)
        self.pixel_spin.setValue(optics.pixel_um)
        self.patch_spin.setValue(48 if is_sr else 64)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with inputs/ and targets/")
        if folder:
            self.folder_edit.setText(folder)

    # ------------------------------------------------------------------ data

    def _optics(self, task: str) -> WidefieldOptics | QPIOptics:
        if task == "sr":
            return WidefieldOptics(na=self.na_spin.value(), wavelength_um=self.wavelength_spin.value(),
                                   pixel_um=self.pixel_spin.value())
        return QPIOptics(wavelength_um=self.wavelength_spin.value(), pixel_um=self.pixel_spin.value(),
                         dz_um=self.dz_spin.value())

    def _data(self, task: str, seed: int) -> tuple[Any, list, dict[str, Any], dict[str, Any]]:
        """Training pairs, validation pairs, data record and optics record — all checked before training."""
        source = self.source_box.currentText()
        fraction = self.val_fraction_spin.value()
        min_side = min(16, self.patch_spin.value())
        if source == _SOURCES[0]:
            names = self.input_box.currentText(), self.target_box.currentText()
            if not all(names):
                raise PairError("choose an input and a target layer (open your image pairs first)")
            if names[0] == names[1]:
                raise PairError("the input and the target are the same layer")
            inp, tgt = (np.asarray(self.viewer.layers[n].data) for n in names)
            pairs = ArrayPairs(task, [inp], [tgt], [f"'{names[0]}' / '{names[1]}'"], min_side)
            train, val = split_validation(pairs, fraction, seed)
            record = {"layers": list(names), "n_pairs": len(pairs), "n_validation": len(val)}
            optics = {"pixel_size_um": list(self.viewer.layers[names[0]].scale[-2:])}
        elif source == _SOURCES[1]:
            folder = self.folder_edit.text().strip()
            if not folder:
                raise PairError("choose a folder with inputs/ and targets/")
            pairs = FolderPairs(folder, task, min_side)
            train, val = split_validation(pairs, fraction, seed)
            record = {"pairs": folder, "n_pairs": len(pairs), "n_validation": len(val)}
            optics = {}
        else:
            optics_obj = self._optics(task)
            train, val, record = simulated_training_data(task, self.n_pairs_spin.value(), seed,
                                                         64 if task == "sr" else 128, optics_obj)
            optics = optics_obj.to_dict()
        if len(train) < 1:
            raise PairError("no pairs are left for training after the validation split")
        return train, val, record, optics

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Check everything, then train in a worker thread (the Start button)."""
        if self.worker is not None:
            return
        seed = 0
        try:
            task, start = self._start()
            config = TrainConfig(steps=self.steps_spin.value(), batch_size=self.batch_spin.value(),
                                 patch_size=self.patch_spin.value(), lr=self.lr_spin.value(),
                                 warmup_steps=min(50, self.steps_spin.value() // 10), seed=seed,
                                 checkpoint_every=max(50, self.val_every_spin.value()),
                                 validate_every=self.val_every_spin.value(), validation_steps=10)
            train, val, record, optics = self._data(task, seed)
            device = resolve_device(self.device_box.currentText())
            network, normalization, parent = starting_network(
                task, start, default_network_config(task), default_normalization(
                    task, self._optics(task) if task == "qpi" else None), seed)
        except (PairError, ValueError, OSError) as err:
            show_error(f"Fine-tune cannot start: {err}")
            return
        workdir = Path(tempfile.mkdtemp(prefix="napari-cvdm-finetune-"))
        trainer = Trainer(task, network, train, normalization, config, val, device,
                          checkpoint=workdir / "run.ckpt.safetensors", log=workdir / "run.log.jsonl")
        self._job = {"task": task, "start": start, "parent": parent, "normalization": normalization,
                     "optics": optics or (parent.optics if parent is not None else {}), "data": record,
                     "config": config, "checkpoint": trainer.checkpoint}
        self._stop.clear()
        self._losses, self._psnrs = [], []
        self.loss_curve.setData([], [])
        self.psnr_curve.setData([], [])
        preview_input = val[0][0] if val else None
        signals = self._signals

        def callback(progress: TrainProgress) -> bool:
            signals.step.emit(progress.step, progress.total, float(progress.loss["total"]))
            if progress.val_psnr is not None and progress.step % config.validate_every == 0:
                signals.validated.emit(progress.step, float(progress.val_psnr))
                if preview_input is not None:
                    model = CVDMModel(network=trainer.ema, task=task, normalization=normalization)
                    pred = predict_image(model, preview_input, n_samples=2, steps=10, seed=0,
                                         device=str(trainer.device))
                    signals.preview.emit(pred.mean)
            return not self._stop.is_set()

        self.worker = create_worker(catching(lambda: trainer.run(callback)), _start_thread=False)
        self.worker.returned.connect(self._on_done)
        self.worker.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._t0 = time.perf_counter()
        self.status.setText(f"training on {len(train)} pairs ({len(val)} for validation)…")
        self.worker.start()

    def stop(self) -> None:
        """End training after the current step; the best weights so far are kept."""
        self._stop.set()
        self.status.setText("stopping after this step…")

    def _on_step(self, step: int, total: int, loss: float) -> None:
        self._losses.append((step, loss))
        steps, losses = zip(*self._losses)
        self.loss_curve.setData(np.asarray(steps, float), np.maximum(np.asarray(losses), 1e-8))
        elapsed = time.perf_counter() - self._t0
        left = elapsed * (total - step) / max(step, 1)
        best = f" · best validation {max(p for _, p in self._psnrs):.2f} dB" if self._psnrs else ""
        self.status.setText(f"step {step}/{total} · loss {loss:.4f} · about {left:.0f} s left{best}")

    def _on_validated(self, step: int, psnr: float) -> None:
        self._psnrs.append((step, psnr))
        steps, values = zip(*self._psnrs)
        self.psnr_curve.setData(np.asarray(steps, float), np.asarray(values))

    def _on_preview(self, mean: np.ndarray) -> None:
        kwargs = {"name": PREVIEW_LAYER, "colormap": "gray", "contrast_limits": robust_limits(mean)}
        if PREVIEW_LAYER in self.viewer.layers:
            layer = self.viewer.layers[PREVIEW_LAYER]
            layer.data = mean
            layer.contrast_limits = kwargs["contrast_limits"]
        else:
            self.viewer.add_image(mean, **kwargs)

    def _on_done(self, result: TrainResult | Failure) -> None:
        if isinstance(result, Failure):
            self.status.setText(f"failed: {result.error}")
            show_error(f"CVDM fine-tuning failed: {result.error}")
            return
        self.result = result
        how = "stopped" if result.stopped_early else "finished"
        best = f"; best validation PSNR {result.best_val_psnr:.2f} dB" if result.best_val_psnr is not None else ""
        self.status.setText(f"{how} after {result.steps_done} steps in {time.perf_counter() - self._t0:.0f} s{best}. "
                            "Save the model to use it in Reconstruct.")

    def _on_finished(self) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.save_button.setEnabled(self.result is not None)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the CVDM model", "my-cvdm.safetensors",
                                              "CVDM models (*.safetensors)")
        if path:
            self.save(path)

    def save(self, path: str | Path) -> Path | None:
        """Write the trained model (safetensors + metadata with lineage) and offer it in Reconstruct."""
        if self.result is None:
            show_error("train a model first")
            return None
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        job = self._job
        parent = job["parent"]
        training = training_record(job["task"], self.result, job["config"], job["data"], parent, job["start"],
                                   "napari Fine-tune widget")
        try:
            save_model(path, self.result.network, job["task"], job["normalization"], job["optics"], training,
                       default_steps=parent.default_steps if parent is not None else 20, name=path.stem)
        except OSError as err:
            show_error(f"could not write {path}: {err}")
            return None
        SESSION_MODELS.add(path.stem, path)
        show_info(f"saved {path}; it is now in Reconstruct's model list as '{path.stem}'")
        self.status.setText(f"saved {path}")
        return path
