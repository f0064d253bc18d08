"""Parts of the Fine-tune widget: where the pairs come from, and the live plots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QWidget,
)

from ..data.dataset import PairError
from ..inference.devices import available_devices
from ..inference.layers import layer_pixel_size
from ..physics.optics import Optics
from ..tasks import Task
from ..training.job import TrainingRequest
from ..training.train import TrainConfig
from ..training.training_data import TrainingData, array_data, folder_data, simulated_data
from ._common import LayerPicker, OpticsForm, int_spin
from ._forms import Box, DataclassForm

__all__ = ["PairSource", "TrainingPlots", "TrainSettings", "SOURCES"]

#: The data sources, in the order of :class:`PairSource`'s pages.
SOURCES = ("image layers", "folder (inputs/ + targets/)", "simulated from optics")


class PairSource(QStackedWidget):
    """Training pairs from two layers, a folder of TIFFs, or the simulator with optics typed by the user."""

    def __init__(self, viewer: Any, exclude: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.input_box = LayerPicker(viewer, exclude=exclude)
        self.target_box = LayerPicker(viewer, exclude=exclude)
        self._keep_apart()
        self.input_box.currentIndexChanged.connect(self._keep_apart)
        viewer.layers.events.inserted.connect(self._keep_apart)  # after the pickers' own refresh
        layers = QWidget()
        form = QFormLayout(layers)
        form.addRow("Input", self.input_box)
        form.addRow("Target", self.target_box)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder with inputs/ and targets/")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder = QWidget()
        row = QHBoxLayout(folder)
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        self.optics_form = OpticsForm()
        self.n_pairs_spin = int_spin(4, 100000, 200, "number of simulated pairs")
        simulated = QWidget()
        sim = QFormLayout(simulated)
        sim.addRow(self.optics_form)
        sim.addRow("pairs", self.n_pairs_spin)
        for page in (layers, folder, simulated):
            self.addWidget(page)
        self.currentChanged.connect(self._fit)
        self._fit(0)

    def _fit(self, index: int) -> None:
        """Take the height of the shown page only (a stacked widget otherwise keeps the tallest page's)."""
        for i in range(self.count()):
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            self.widget(i).setSizePolicy(policy, policy)
        self.adjustSize()

    def _keep_apart(self, *_: Any) -> None:
        """The target starts on another layer than the input (the first other image), so that the form is not
        wrong before the user touches it."""
        inp = self.input_box.layer()
        if inp is None or self.target_box.layer() is not inp:
            return
        other = next((i for i in range(self.target_box.count()) if self.target_box.itemData(i) not in (None, inp)), -1)
        if other >= 0:
            self.target_box.setCurrentIndex(other)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with inputs/ and targets/")
        if folder:
            self.folder_edit.setText(folder)

    def optics(self, base: Optics) -> Optics:
        """The optics of the pairs: typed (simulated), the input layer's pixel size (layers), else ``base``."""
        if self.currentIndex() == 2:
            return self.optics_form.optics()
        layer = self.input_box.layer()
        pixel = layer_pixel_size(layer.scale, layer.units) if self.currentIndex() == 0 and layer is not None else None
        return base.replace(pixel_um=pixel[1]) if pixel is not None else base

    def data(self, task: Task, seed: int, fraction: float, min_side: int, optics: Optics) -> TrainingData:
        """The pairs of the chosen source, checked and split (``PairError`` with a message for the user)."""
        if self.currentIndex() == 0:
            inp, tgt = self.input_box.layer(), self.target_box.layer()
            if inp is None or tgt is None:
                raise PairError("choose an input and a target layer (open your image pairs first)")
            if inp is tgt:
                raise PairError("the input and the target are the same layer")
            return array_data(
                task,
                [np.asarray(inp.data)],
                [np.asarray(tgt.data)],
                [f"'{inp.name}' / '{tgt.name}'"],
                fraction,
                seed,
                min_side,
                {"layers": [inp.name, tgt.name]},
            )
        if self.currentIndex() == 1:
            folder = self.folder_edit.text().strip()
            if not folder:
                raise PairError("choose a folder with inputs/ and targets/")
            return folder_data(task, folder, fraction, seed, min_side)
        return simulated_data(task, self.n_pairs_spin.value(), seed, optics=optics)


class TrainingPlots(QWidget):
    """Live training loss (log scale) and validation PSNR."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[tuple[int, float]] = []
        self.psnrs: list[tuple[int, float]] = []
        self.loss_plot = pg.PlotWidget(title="training loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#4fc3f7", width=1))
        self.psnr_plot = pg.PlotWidget(title="validation PSNR (dB)")
        self.psnr_curve = self.psnr_plot.plot([], [], pen=pg.mkPen("#ffb74d", width=2), symbol="o", symbolSize=6)
        layout = QFormLayout(self)
        for plot in (self.loss_plot, self.psnr_plot):
            plot.setLabel("bottom", "step")
            plot.setMinimumHeight(120)
            layout.addRow(plot)
        self._empty_axes()

    def _empty_axes(self) -> None:
        """Axes of empty plots: a loss from 0.001 to 1 and a PSNR from 20 to 40 dB over 100 steps (an empty plot's
        own range crowds its axis with labels); the first point gives the range back to the data."""
        self.loss_plot.setRange(xRange=(0, 100), yRange=(-3, 0), padding=0)  # log10 of the loss
        self.psnr_plot.setRange(xRange=(0, 100), yRange=(20, 40), padding=0)

    def clear(self) -> None:
        """Empty both plots."""
        self.losses, self.psnrs = [], []
        self.loss_curve.setData([], [])
        self.psnr_curve.setData([], [])
        self._empty_axes()

    def add_loss(self, step: int, loss: float) -> None:
        """One more training step."""
        self.losses.append((step, loss))
        steps, values = zip(*self.losses)
        self.loss_curve.setData(np.asarray(steps, float), np.maximum(np.asarray(values), 1e-8))
        self.loss_plot.enableAutoRange()

    def add_psnr(self, step: int, psnr: float) -> None:
        """One more validation."""
        self.psnrs.append((step, psnr))
        steps, values = zip(*self.psnrs)
        self.psnr_curve.setData(np.asarray(steps, float), np.asarray(values))
        self.psnr_plot.enableAutoRange()


class TrainSettings(QWidget):
    """Steps, learning rate, batch and patch size, validation and device of a fine-tuning run: the command line's
    training options (:class:`TrainConfig`, :class:`TrainingRequest`)."""

    def __init__(self) -> None:
        super().__init__()
        self.train_form = DataclassForm(
            TrainConfig,
            {
                "steps": Box("Steps", 1, 1_000_000, default=300),
                "lr": Box("Learning rate", 1e-6, 1e-1, 6, default=2e-4),  # fine-tuning: 1e-4 to 3e-4
                "batch_size": Box("Batch size", 1, 256),
                "patch_size": Box("Patch size", 16, 1024),
                "validate_every": Box("Validate every", 1, 100_000, default=50),
            },
        )
        self.run_form = DataclassForm(
            TrainingRequest,
            {
                "validation_fraction": Box("Validation fraction", 0.0, 0.9, 2),
                "device": Box("Device", choices=("auto", *available_devices())),
            },
        )
        boxes = {**self.train_form.boxes, **self.run_form.boxes}
        self.steps_spin, self.lr_spin, self.batch_spin = boxes["steps"], boxes["lr"], boxes["batch_size"]
        self.patch_spin, self.val_every_spin = boxes["patch_size"], boxes["validate_every"]
        self.val_fraction_spin, self.device_box = boxes["validation_fraction"], boxes["device"]
        form = QFormLayout(self)
        self.train_form.add_rows(form)
        self.run_form.add_rows(form)

    def config(self) -> TrainConfig:
        """The settings as a training configuration (validated: ``ValueError`` for impossible values)."""
        steps, every = self.steps_spin.value(), self.val_every_spin.value()
        return self.train_form.value(
            warmup_steps=min(50, steps // 10), seed=0, checkpoint_every=max(50, every), validation_steps=10
        )

    def fraction(self) -> float:
        """Share of the pairs held out for validation."""
        return self.val_fraction_spin.value()
