"""Plugins > CVDM > Reconstruct: run a model on an image layer in a worker thread.

The widget only gathers choices, starts :func:`napari_cvdm.predict.predict_image`
in a napari ``thread_worker`` and turns the result into layers with
:func:`napari_cvdm.layers.result_layers`. Progress comes back through the
sampler's callback (a Qt signal crosses the thread); Cancel makes the callback
return ``False``, which stops the sampler within one step, and nothing is added.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..diffusion.sampler import SamplingCancelled, SamplingProgress
from ..layers import output_geometry, result_layer_names, result_layers
from ..models import CVDMModel, ModelFileError, Prediction, load_model
from ..predict import available_devices, check_input, predict_image
from ._common import CHOOSE_FILE, Failure, catching, int_spin, offer_model_file, refill
from ._session import SESSION_MODELS

__all__ = ["ReconstructWidget", "format_eta"]

_BOTH_PLANES = "(both planes are in the input layer)"


def format_eta(done: int, total: int, elapsed_s: float) -> str:
    """``"about 40 s left (12 of 128 denoiser passes)"`` (no estimate before the first pass)."""
    passes = f"{done} of {total} denoiser passes"
    if not 0 < done < total:
        return passes
    left = elapsed_s * (total - done) / done
    eta = f"about {left:.0f} s left" if left < 120 else f"about {left / 60:.1f} min left"
    return f"{eta} ({passes})"


class _Progress(QObject):
    """Carries sampler progress from the worker thread to the GUI thread."""

    step = Signal(int, int)


class ReconstructWidget(QWidget):
    """Mean and per-pixel std of a CVDM reconstruction of the selected image layer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._models: dict[str, CVDMModel] = {}
        self._files: dict[str, Path] = {}
        self._cancel = threading.Event()
        self._t0 = 0.0
        self.worker = None
        self._progress = _Progress()
        self._progress.step.connect(self._on_step)

        self.layer_box = QComboBox()
        self.second_box = QComboBox()
        self.second_label = QLabel("+dz image")
        self.model_box = QComboBox()
        self.samples_spin = int_spin(1, 256, 8, "Samples drawn; their mean is the reconstruction, their spread "
                                                 "the uncertainty (the std needs at least 2)")
        self.steps_spin = int_spin(1, 1000, 16, "Sampling steps (the model's default is set when you pick it)")
        self.seed_spin = int_spin(0, 2**31 - 1, 0, "Same seed, same result")
        self.tile_spin = int_spin(0, 16384, 0, "Tile side in input pixels for large images (tiles overlap and "
                                                 "are blended at every step); auto: only when memory needs it")
        self.tile_spin.setSpecialValueText("auto")
        self.tile_spin.setSingleStep(64)
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", *available_devices()])
        self.device_box.setToolTip("auto: CUDA, then Apple MPS, then CPU")
        self.samples_check = QCheckBox("add the samples as a stack")
        self.schedule_check = QCheckBox("add the learned schedule λ(x)")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.layer_box)
        form.addRow(self.second_label, self.second_box)
        form.addRow("Model", self.model_box)
        form.addRow("Samples", self.samples_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Device", self.device_box)
        form.addRow("Tile size", self.tile_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.samples_check)
        layout.addWidget(self.schedule_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.model_box.activated.connect(self._on_model_activated)
        self.model_box.currentTextChanged.connect(self._on_model_changed)
        events = self.viewer.layers.events
        events.inserted.connect(self._refresh_layers)
        events.removed.connect(self._refresh_layers)
        events.reordered.connect(self._refresh_layers)
        SESSION_MODELS.changed.connect(self._refresh_models)
        self.destroyed.connect(lambda: SESSION_MODELS.changed.disconnect(self._refresh_models))
        self._refresh_models()
        self._refresh_layers()

    # ------------------------------------------------------------------ choices

    def _image_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event: Any = None) -> None:
        """Fill the image lists from the viewer, keeping the current choices where they still exist."""
        names = [layer.name for layer in self._image_layers()]
        refill(self.layer_box, names)
        refill(self.second_box, [_BOTH_PLANES, *names])
        for layer in self._image_layers():
            layer.events.name.disconnect(self._refresh_layers)
            layer.events.name.connect(self._refresh_layers)

    def _refresh_models(self) -> None:
        """Bundled models, models saved in this session, files chosen before, and a file chooser."""
        for name, path in SESSION_MODELS.items():
            if self._files.get(name) != path:
                self._models.pop(name, None)
            self._files[name] = path
        refill(self.model_box, ["sr", "qpi", *self._files, CHOOSE_FILE])
        self._on_model_changed(self.model_box.currentText())

    def _on_model_activated(self, index: int) -> None:
        offer_model_file(self, self.model_box, index, "Open a CVDM model file", self.add_model_file)

    def add_model_file(self, path: str | Path) -> None:
        """Offer a model file in the list and select it (an invalid file is reported and not added)."""
        try:
            model = load_model(path)
        except ModelFileError as err:
            show_error(str(err))
            self.model_box.setCurrentIndex(0)
            return
        name = Path(path).stem
        self._files[name] = Path(path)
        self._models[name] = model
        self._refresh_models()
        self.model_box.setCurrentIndex(self.model_box.findText(name))

    def _on_model_changed(self, name: str) -> None:
        model = self.current_model(quiet=True)
        if model is None:
            return
        self.steps_spin.setValue(model.default_steps)
        is_qpi = model.task == "qpi"
        self.second_box.setVisible(is_qpi)
        self.second_label.setVisible(is_qpi)

    def current_model(self, quiet: bool = False) -> CVDMModel | None:
        """The selected model, loaded once and kept (``None`` for the file-chooser entry or a bad file)."""
        name = self.model_box.currentText()
        if not name or name == CHOOSE_FILE:
            return None
        if name not in self._models:
            try:
                self._models[name] = load_model(self._files.get(name, name))
            except ModelFileError as err:
                if not quiet:
                    show_error(str(err))
                return None
        return self._models[name]

    # ------------------------------------------------------------------ running

    def _gather_input(self, model: CVDMModel) -> tuple[Image, np.ndarray, bool]:
        """The input layer, its data as the model expects it, and whether it carries the planes (qpi)."""
        name = self.layer_box.currentText()
        if not name:
            raise ValueError("open an image first (File > Open, or File > Open Sample > CVDM)")
        layer = self.viewer.layers[name]
        if layer.rgb:
            raise ValueError(f"'{name}' is an RGB image; CVDM needs a single-channel microscope image")
        data = np.asarray(layer.data)
        if model.task != "qpi" or self.second_box.currentText() in ("", _BOTH_PLANES):
            if model.task == "qpi" and not (data.ndim >= 3 and data.shape[-3] == 2):
                raise ValueError(f"'{name}' has shape {data.shape}; qpi needs two defocused images: a layer "
                                 "with 2 planes (−dz, +dz), or choose the +dz image as the second layer")
            return layer, data, model.task == "qpi"
        other = self.viewer.layers[self.second_box.currentText()]
        plus = np.asarray(other.data)
        if plus.shape != data.shape:
            raise ValueError(f"the −dz image '{name}' {data.shape} and the +dz image '{other.name}' {plus.shape} "
                             "must have the same shape")
        return layer, np.stack([data, plus], axis=-3), False

    def run(self) -> None:
        """Start a reconstruction in a worker thread (the button's action)."""
        if self.worker is not None:
            return
        model = self.current_model()
        if model is None:
            show_error("choose a model first")
            return
        try:
            layer, data, plane_axis = self._gather_input(model)
            check_input(data, model.task)
            if self.tile_spin.value() and self.tile_spin.value() < 16:
                raise ValueError("the tile size must be at least 16 pixels (or auto)")
        except ValueError as err:
            show_error(str(err))
            return
        n, steps, seed = self.samples_spin.value(), self.steps_spin.value(), self.seed_spin.value()
        device = self.device_box.currentText()
        tile_size = self.tile_spin.value() or None
        scale, translate = output_geometry(model.task, layer.scale, layer.translate, plane_axis)
        units = tuple(str(u) for u in layer.units)[-len(scale):] if hasattr(layer, "units") else None
        job = {"name": layer.name, "task": model.task, "scale": scale, "translate": translate, "units": units,
               "samples": self.samples_check.isChecked(), "schedule": self.schedule_check.isChecked()}
        self._cancel.clear()

        def callback(progress: SamplingProgress) -> bool:
            self._progress.step.emit(progress.done, progress.total)
            return not self._cancel.is_set()

        def work() -> Prediction | None:
            try:
                return predict_image(model, data, n_samples=n, steps=steps, seed=seed, device=device,
                                     tile_size=tile_size, callback=callback)
            except SamplingCancelled:
                return None

        self.worker = create_worker(catching(work), _start_thread=False)
        self.worker.returned.connect(lambda pred: self._on_done(pred, job))
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status.setText(f"reconstructing '{layer.name}' with {model.name}: {n} samples × {steps} steps…")
        self._t0 = time.perf_counter()
        self.worker.start()

    def cancel(self) -> None:
        """Stop the running reconstruction after the current sampling step; nothing is added."""
        self._cancel.set()
        self.status.setText("cancelling…")

    def _on_step(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self.status.setText(format_eta(done, total, time.perf_counter() - self._t0))

    def _on_done(self, prediction: Prediction | Failure | None, job: dict[str, Any]) -> None:
        if isinstance(prediction, Failure):
            self._on_error(prediction.error)
            return
        if prediction is None:
            self.status.setText("cancelled; nothing was added")
            return
        layers = result_layers(job["name"], job["task"], prediction, job["scale"], job["translate"],
                               job["units"], with_samples=job["samples"], with_schedule=job["schedule"])
        for data, kwargs, _ in layers:
            self._add_or_update(data, kwargs)
        self.viewer.layers.selection.active = self.viewer.layers[layers[0][1]["name"]]
        seconds = time.perf_counter() - self._t0
        self.status.setText(f"done in {seconds:.1f} s: '{layers[0][1]['name']}' and '{layers[1][1]['name']}'")
        if job["schedule"] and prediction.schedule is None:
            show_warning("this model uses a fixed schedule: there is no λ(x) map to show")

    def _add_or_update(self, data: np.ndarray, kwargs: dict[str, Any]) -> None:
        """Add a result layer, or refresh the one a previous run made (never any other layer)."""
        name = kwargs["name"]
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if existing is None or not isinstance(existing, Image) or "cvdm" not in existing.metadata:
            if existing is not None:
                show_info(f"a layer named '{name}' exists and was not made by CVDM; adding a new one beside it")
            self.viewer.add_image(data, **kwargs)
            return
        existing.data = data
        existing.scale = kwargs["scale"]
        existing.translate = kwargs["translate"]
        existing.contrast_limits = kwargs["contrast_limits"]
        existing.metadata = kwargs["metadata"]

    def _on_error(self, err: Exception) -> None:
        message = str(err)
        if isinstance(err, (MemoryError, RuntimeError)) and "alloc" in message.lower():
            message = ("not enough memory for this image with these settings: use fewer samples, or a "
                       f"smaller crop ({type(err).__name__})")
        self.status.setText(f"failed: {message}")
        show_error(f"CVDM reconstruction failed: {message}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def result_names(self) -> dict[str, str]:
        """Names the results of the selected input will have."""
        return result_layer_names(self.layer_box.currentText())
