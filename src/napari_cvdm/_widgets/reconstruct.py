"""Plugins > CVDM > Reconstruct: run a model on an image layer in a worker thread.

The widget gathers choices into a :class:`ReconstructJob`, runs
:meth:`~napari_cvdm.inference.models.CVDMModel.predict_with` through a :class:`~._runner.RunController` and turns the
result into layers with :func:`napari_cvdm.inference.layers.result_layers`. Samples are finished in rounds (2, 2, 4, …:
progressive sampling), and the mean and std layers appear after the first round and are refined after each. Cancel
makes the sampler's callback return ``False`` (so does napari closing), which stops within one tile or chunk of samples
and removes the running result; "Stop and keep" ends the run at once (after the first round if none is finished yet) and
keeps the samples finished.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..inference.brightfield_input import BrightfieldInput
from ..inference.devices import available_devices
from ..inference.file_optics import stated_note, stated_values
from ..inference.layers import layer_defocus, layer_pixel_size, layer_plane_spacing, model_input, residual_geometry
from ..inference.models import CVDMModel
from ..inference.optics_match import model_at
from ..inference.predict import Prediction, SamplingOptions
from ..physics.brightfield import ESTIMATE
from ._common import LayerPicker, MethodPicker, OpticsForm
from ._docking import mark_as_panel
from ._forms import Box, DataclassForm
from ._results import ShowsResults
from ._runner import ReconstructJob, RunController

__all__ = ["ReconstructJob", "ReconstructWidget"]

_BOTH_PLANES = "(both planes are in the input layer)"
#: Empty-field choices of brightfield planes besides an image layer (:func:`prepare_brightfield`).
_NO_FLAT, _ESTIMATE_FLAT = "(none: the planes are divided by it already)", "estimate from the planes"
#: Smallest tile offered: smaller tiles are mostly overlap (16-pixel tiles made a 2 s run take 97 s).
MIN_GUI_TILE = 64


def _layer_units(layer: Image) -> tuple[str, ...] | None:
    """The units of ``layer``'s axes by name (``None`` for napari versions whose layers have none)."""
    return tuple(str(u) for u in layer.units) if hasattr(layer, "units") else None


class ReconstructWidget(ShowsResults, QWidget):
    """Mean and per-pixel std of a CVDM reconstruction of the chosen image layer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        mark_as_panel(self)
        self.viewer = napari_viewer
        self.layer_box = LayerPicker(napari_viewer)
        self.second_box = LayerPicker(napari_viewer, leading=[_BOTH_PLANES])
        self.second_label = QLabel("+dz image")
        self.flat_box = LayerPicker(napari_viewer, leading=[_NO_FLAT, _ESTIMATE_FLAT])
        self.flat_label = QLabel("Empty field")
        self.flat_box.setToolTip(
            "Raw camera counts are divided by an image of the empty field recorded with the same exposure (or one "
            "per plane), or by a smooth illumination fitted to the planes"
        )
        self.model_box = MethodPicker()
        self._make_sampling_fields()
        self.optics_form = OpticsForm()  # your optics: a classical method's, or those a model is mapped onto
        self.optics_label = QLabel("Optics of your microscope")
        self.optics_label.setToolTip(
            "A model runs at other optics by physics similarity (sr: the same cut-off in cycles per pixel; qpi: the "
            "same Fresnel number); change only the pixel size and the sr cut-off is read off the image. Left as the "
            "model's, a layer whose scale is in µm runs at its own pixel size (and a qpi layer's planes at their Z "
            "spacing) where that differs from the model's; the result says so"
        )
        self.optics_note = QLabel("")  # what the model takes from the chosen layer's scale, before it runs
        self.optics_note.setWordWrap(True)
        self.samples_check = QCheckBox("add the samples as a stack")
        self.schedule_check = QCheckBox("add the learned schedule λ(x)")
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.keep_button = QPushButton("Stop and keep")
        self.keep_button.setToolTip(
            "End the run now and keep the mean and std of the samples finished so far (at least the first two; "
            "Cancel keeps nothing)"
        )
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        #: Result layers still to be added after the mean and std (one per turn of the event loop).
        self.pending_layers = 0
        #: Layers showing the running result of the current run (removed on Cancel).
        self.partial_layers: list[Image] = []
        self._partial_planes: dict[int, Prediction] = {}
        self.runner = RunController(
            self.run_button,
            self.cancel_button,
            self.progress_bar,
            self.status,
            "CVDM reconstruction",
            keep_button=self.keep_button,
        )

        self._lay_out()
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.keep_button.clicked.connect(self.stop_and_keep)
        self.model_box.model_changed.connect(self._on_model_changed)
        self._on_model_changed(self.model_box.current_model(quiet=True))
        self._follow_for_optics_note(napari_viewer)

    def _follow_for_optics_note(self, viewer: Any) -> None:
        """Keep the line under the optics form up to date with the form, the chosen layers and the viewer's."""
        self.optics_form.edited.connect(self._show_optics_note)
        self.layer_box.currentIndexChanged.connect(self._show_optics_note)
        self.second_box.currentIndexChanged.connect(self._show_optics_note)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._show_optics_note)
        self._show_optics_note()

    def _make_sampling_fields(self) -> None:
        """The samples, steps, seed, device and tile fields: the command line's sampling options."""
        self.sampling_form = DataclassForm(
            SamplingOptions,
            {
                "n_samples": Box("Samples", 1, 256),
                "steps": Box("Steps", 1, 1000, default=16),  # the model's default is set when it is picked
                "seed": Box("Seed", 0, 2**31 - 1),
                "device": Box("Device", choices=("auto", *available_devices())),
                "tile_size": Box("Tile size", 0, 16384, auto="auto", step=64),
            },
        )
        boxes = self.sampling_form.boxes
        self.samples_spin, self.steps_spin, self.seed_spin = boxes["n_samples"], boxes["steps"], boxes["seed"]
        self.device_box, self.tile_spin = boxes["device"], boxes["tile_size"]

    def _lay_out(self) -> None:
        form = QFormLayout()
        for label, box in (
            ("Image", self.layer_box),
            (self.second_label, self.second_box),
            (self.flat_label, self.flat_box),
            ("Model", self.model_box),
        ):
            form.addRow(label, box)
        self.sampling_form.add_rows(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.keep_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.optics_label)
        layout.addWidget(self.optics_form)
        layout.addWidget(self.optics_note)
        for item in (self.samples_check, self.schedule_check, buttons, self.progress_bar, self.status):
            (layout.addLayout if isinstance(item, QHBoxLayout) else layout.addWidget)(item)
        layout.addStretch(1)
        another = QPushButton("Another Reconstruct…")
        another.setToolTip("Open a second Reconstruct panel, e.g. to run another model on the same image beside this")
        another.clicked.connect(self.open_another)
        layout.addWidget(another)

    def open_another(self) -> ReconstructWidget:
        """Dock another Reconstruct widget (napari's menu shows the one it has instead of a second one)."""
        widget = ReconstructWidget(self.viewer)
        names = set(getattr(self.viewer.window, "dock_widgets", {}))  # docked widgets by name (napari ≥ 0.6.2)
        n = 2
        while f"Reconstruct {n}" in names:
            n += 1
        self.viewer.window.add_dock_widget(widget, name=f"Reconstruct {n}", area="right", tabify=True)
        return widget

    @property
    def worker(self) -> Any:
        """The running worker, or ``None``."""
        return self.runner.worker

    def add_model_file(self, path: Any) -> CVDMModel | None:
        """Offer a model file in the list and choose it (an invalid file is reported and not added)."""
        return self.model_box.add_file(path)

    def current_model(self) -> CVDMModel | None:
        """The chosen model (``None`` when none is chosen)."""
        return self.model_box.current_model()

    def _on_model_changed(self, model: CVDMModel | None) -> None:
        if model is None:
            return
        self.steps_spin.setValue(model.default_steps)
        for box in (self.samples_spin, self.steps_spin, self.seed_spin, self.samples_check, self.schedule_check):
            box.setEnabled(model.stochastic)  # a classical method draws no samples
        self.optics_form.show_optics(model.optics)
        self._show_optics_note()
        pair = model.task.input_planes == 2
        for item in (self.second_box, self.second_label):
            item.setVisible(pair)
        for item in (self.flat_box, self.flat_label):
            item.setVisible(model.task.brightfield)

    def _flat_field(self) -> np.ndarray | str | None:
        """The chosen empty field: ``None``, :data:`~napari_cvdm.physics.brightfield.ESTIMATE` or an image."""
        layer = self.flat_box.layer()
        if layer is not None:
            return np.asarray(layer.data)
        return ESTIMATE if self.flat_box.currentText() == _ESTIMATE_FLAT else None

    def _form_changes(self, model: CVDMModel) -> dict[str, float]:
        """The optics fields the user changed in the form from ``model``'s (field → value; ``ValueError`` when a
        value is out of range)."""
        own, given = model.optics.to_dict(), self.optics_form.optics().to_dict()
        return {k: v for k, v in given.items() if k in self.optics_form.boxes and abs(v - own[k]) > 1e-4 * abs(own[k])}

    def _at_form_optics(self, model: CVDMModel) -> Any:
        """``model`` run at the optics in the form where the user changed them (:func:`model_at`)."""
        return model_at(model, self._form_changes(model))

    def _show_optics_note(self, *_: Any) -> None:
        """Say under the optics form what the chosen model will take from the chosen layer's scale
        (:func:`~napari_cvdm.inference.file_optics.stated_note`); nothing for a classical method, which runs at the
        form's optics."""
        model, layer = self.model_box.current_model(quiet=True), self.layer_box.layer()
        if model is None or layer is None or not model.stochastic:
            self.optics_note.setText("")
            return
        try:
            changed = self._form_changes(model)
        except ValueError:
            self.optics_note.setText("")
            return
        units = _layer_units(layer)
        planes = model.task.input_planes == 2 and self.second_box.layer() is None
        pixel = layer_pixel_size(layer.scale, units)
        dz = layer_defocus(layer.scale, units, getattr(layer.data, "shape", ()), planes)
        stated = stated_values(None if pixel is None else pixel[-1], dz, model.optics)
        try:
            self.optics_note.setText(stated_note(model.task, stated, model.optics, changed))
        except ValueError as err:  # a layer scale no optics can have (e.g. nm taken for µm)
            self.optics_note.setText(f"The layer's scale gives optics that cannot be: {err}.")

    def _gather_input(self, model: CVDMModel) -> tuple[Image, np.ndarray, bool]:
        """The input layer, its data as the model takes it, and whether the layer carries the planes."""
        layer, other = self.layer_box.layer(), self.second_box.layer()
        if layer is None:
            raise ValueError("open an image first (File > Open, or File > Open Sample > CVDM)")
        if layer.rgb:
            raise ValueError(f"'{layer.name}' is an RGB image; CVDM needs a single-channel microscope image")
        if other is layer and model.task.input_planes == 2:
            raise ValueError(f"'{layer.name}' is chosen for both −dz and +dz; choose the +dz image as the second layer")
        second = None if other is None else (other.name, np.asarray(other.data))
        data, plane_axis = model_input(model.task, layer.name, np.asarray(layer.data), second)
        if model.task.input_planes == 1 and data.ndim == 3 and data.shape[0] == 2:
            show_warning(
                f"'{layer.name}' has two planes, as a defocused brightfield pair has; {model.name} "
                "reconstructs them as two widefield images (for phase, choose a qpi model)"
            )
        return layer, data, plane_axis

    def job(self) -> ReconstructJob:
        """The job the current choices describe, checked (``ValueError`` with a message for the user)."""
        model = self.model_box.current_model()
        if model is None:
            raise ValueError("choose a model first")
        model = model.with_optics(self.optics_form.optics()) if not model.stochastic else self._at_form_optics(model)
        layer, data, plane_axis = self._gather_input(model)
        if model.task.brightfield:  # raw counts, stacks, an empty field (estimated in the worker only: ~1 s on 1024²)
            model = BrightfieldInput(model, self._flat_field())
        owner = f"{id(self)}/{id(layer)}/{model.path or model.name}/{model.task.name}/{data.shape}"
        in_units = _layer_units(layer)
        spacing = layer_plane_spacing(layer.scale, in_units, plane_axis)
        given = model.given(data, layer_pixel_size(layer.scale, in_units), spacing)  # checked once (errors at once)
        if 0 < self.tile_spin.value() < MIN_GUI_TILE:
            raise ValueError(
                f"tiles of {self.tile_spin.value()} pixels spend most of their time on the overlaps "
                f"(a 2 s run takes minutes): use at least {MIN_GUI_TILE}, or auto"
            )
        options = self.sampling_form.value(progressive=model.stochastic and self.samples_spin.value() > 2)
        scale, translate = model.task.output_geometry(layer.scale, layer.translate, plane_axis)
        units = None if in_units is None else in_units[-len(scale) :]
        in_scale, in_translate = residual_geometry(model.task, layer.scale, layer.translate, plane_axis)
        return ReconstructJob(
            model,
            given,
            options,
            layer.name,
            scale,
            translate,
            units,
            self.samples_check.isChecked(),
            self.schedule_check.isChecked(),
            owner,
            (in_scale, in_translate, in_units),
        )

    def run(self) -> None:
        """Start a reconstruction in a worker thread (the Run button)."""
        if self.runner.running:
            return
        try:
            job = self.job()
        except ValueError as err:
            self.status.setText(f"not started: {err}")
            show_error(str(err))
            return
        o = job.options
        self.partial_layers, self._partial_planes = [], {}
        self.runner.start(
            lambda context: job.run(context, lambda part: self._show_partial(part, job)),
            lambda pred: self._on_done(pred, job),
            f"reconstructing '{job.input_name}' with {job.model.name}: {o.n_samples} samples × {o.steps} steps…",
        )
        self.keep_button.setEnabled(o.progressive)  # only a run in rounds has something to keep early

    def event(self, event: QEvent) -> bool:
        """Closing the panel (its ×) takes the widget out of the window: the run stops as with Cancel."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.runner.running:
            self.runner.stop("the panel was closed: cancelling…")
        return super().event(event)

    def cancel(self) -> None:
        """Stop the running reconstruction after the current denoiser pass; nothing is kept."""
        self.runner.stop("cancelling…")

    def stop_and_keep(self) -> None:
        """End the run (after the first round if none is finished yet) and keep the result of the samples
        finished."""
        self.runner.stop_and_keep("stopping; the mean and std of the finished samples will be kept…")
