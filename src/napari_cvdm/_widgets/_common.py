"""Small Qt pieces shared by the widgets: number boxes, pickers that follow the viewer and the session's models,
and an optics form generated from an optics class."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QSpinBox, QWidget

from ..inference.models import BUNDLED, CVDMModel, ModelFileError, load_model
from ..physics.optics import Optics, field_help
from ._session import SESSION_MODELS

__all__ = ["preload", "CHOOSE_FILE", "LayerPicker", "ModelPicker", "OpticsForm", "file_label", "float_spin", "int_spin"]

#: The last entry of a model list: opens a file dialog.
CHOOSE_FILE = "Model file…"
_FILE = "file:"  # item data of a model file: the prefix and its path


def int_spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    """An integer box with its range, value and tooltip."""
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def float_spin(lo: float, hi: float, value: float, decimals: int, tip: str) -> QDoubleSpinBox:
    """A decimal box with its range, precision, value and tooltip."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(10**-decimals * 10)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class LayerPicker(QComboBox):
    """The image layers of the viewer, kept up to date (added, removed, reordered, renamed layers).

    The choice follows the *layer*, not its name: renaming or moving the chosen layer keeps it chosen.
    """

    def __init__(self, viewer: Any, leading: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        super().__init__()
        self.viewer, self._leading, self._exclude = viewer, list(leading), set(exclude)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def layers(self) -> list[Image]:
        """The image layers offered, in the viewer's order."""
        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer.name not in self._exclude]

    def refresh(self, event: Any = None) -> None:
        """Refill from the viewer, keeping the chosen layer where it still exists (else the first entry)."""
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        for text in self._leading:
            self.addItem(text, None)
        for layer in self.layers():
            self.addItem(layer.name, layer)
            layer.events.name.disconnect(self.refresh)
            layer.events.name.connect(self.refresh)
        index = self.findData(current) if current is not None else -1
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)

    def layer(self) -> Image | None:
        """The chosen layer (``None`` for a leading entry or an empty list)."""
        return self.currentData()


def file_label(path: Path) -> str:
    """How a model file is listed: its file name and its folder, never a bare name that could look bundled."""
    return f"{path.name} ({path.parent})"


class ModelPicker(QComboBox):
    """Bundled models, then entries of the widget's own, then the session's model files (by file name and
    folder), then :data:`CHOOSE_FILE`; models are loaded once and kept.

    ``model_changed`` carries the chosen :class:`CVDMModel`, or ``None`` for an entry that is not a model.
    """

    model_changed = Signal(object)
    #: Item data: a bundled name, ``file:<path>``, one of the widget's own values, or :data:`CHOOSE_FILE`.

    def __init__(self, extra: Sequence[tuple[str, Any]] = (), title: str = "Open a CVDM model file") -> None:
        super().__init__()
        self._extra, self._title = list(extra), title
        self._models: dict[str, CVDMModel] = {}
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(lambda _: self.model_changed.emit(self.current_model(quiet=True)))
        SESSION_MODELS.changed.connect(self.refresh)
        self.destroyed.connect(lambda: SESSION_MODELS.changed.disconnect(self.refresh))
        self.refresh()

    def refresh(self) -> None:
        """Refill, keeping the current entry."""
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        for name in BUNDLED:
            self.addItem(name, name)
        for text, value in self._extra:
            self.addItem(text, value)
        for path in SESSION_MODELS.paths():
            self.addItem(file_label(path), f"{_FILE}{path}")
        self.addItem(CHOOSE_FILE, CHOOSE_FILE)
        self.setCurrentIndex(max(self.findData(current), 0))
        self.blockSignals(False)

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != CHOOSE_FILE:
            return
        path, _ = QFileDialog.getOpenFileName(self, self._title, "", "CVDM models (*.safetensors)")
        if not path or self.add_file(path) is None:
            self.setCurrentIndex(0)

    def add_file(self, path: str | Path) -> CVDMModel | None:
        """Load a model file, list it for the session and choose it (a bad file is reported, not listed)."""
        try:
            model = load_model(path)
        except ModelFileError as err:
            show_error(str(err))
            return None
        path = Path(path).resolve()
        self._models[f"{_FILE}{path}"] = model
        SESSION_MODELS.add(path)
        self.setCurrentIndex(self.findData(f"{_FILE}{path}"))
        return model

    def current_model(self, quiet: bool = False) -> CVDMModel | None:
        """The chosen model, loaded once (``None`` for other entries or a file that cannot be loaded)."""
        key = self.currentData()
        if not isinstance(key, str) or not (key in BUNDLED or key.startswith(_FILE)):
            return None
        if key not in self._models:
            try:
                self._models[key] = load_model(key.removeprefix(_FILE))
            except ModelFileError as err:
                if not quiet:
                    show_error(str(err))
                return None
        return self._models[key]


class MethodPicker(ModelPicker):
    """:class:`ModelPicker` with the classical methods of every task after the bundled models (for
    Reconstruct: users compare CVDM with TIE, iterative retrieval or Richardson–Lucy on their own data)."""

    _CLASSICAL = "classical:"

    def __init__(self) -> None:
        from ..inference.classical import classical_methods

        self._methods = {f"{self._CLASSICAL}{m.task.name}:{m.name}": m for m in classical_methods()}
        super().__init__(extra=[(f"{m.name} — {m.task.name}, classical", key) for key, m in self._methods.items()])

    def current_model(self, quiet: bool = False) -> Any:
        """The chosen model or classical method (``None`` for other entries)."""
        key = self.currentData()
        if isinstance(key, str) and key in self._methods:
            return self._methods[key]
        return super().current_model(quiet)


class OpticsForm(QWidget):
    """One box per field of an optics class that users set (those with a command-line option), labelled and
    explained from the class itself; :meth:`optics` builds (and so validates) the instance. ``edited`` is emitted
    whenever a box's value changes."""

    edited = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._layout = QFormLayout(self)
        self._cls: type[Optics] | None = None
        self.boxes: dict[str, QDoubleSpinBox] = {}

    def show_optics(self, optics: Optics) -> None:
        """Rebuild the boxes for ``optics``'s class, filled with its values."""
        if type(optics) is not self._cls:
            while self._layout.rowCount():
                self._layout.removeRow(0)
            self._cls, self.boxes = type(optics), {}
            for f in dataclasses.fields(optics):
                if "cli" in f.metadata and f.metadata.get("form", True):
                    box = float_spin(0.0, 1000.0, 0.0, 4, field_help(self._cls, f.name))
                    box.valueChanged.connect(self.edited.emit)
                    self.boxes[f.name] = box
                    self._layout.addRow(f.metadata.get("label", f.name), box)
        for name, box in self.boxes.items():
            box.setValue(float(getattr(optics, name)))

    def optics(self) -> Optics:
        """The optics in the boxes (``ValueError`` when a value is out of range)."""
        if self._cls is None:
            raise ValueError("no optics to edit")
        return self._cls().replace(**{name: box.value() for name, box in self.boxes.items()})


def preload(*modules: str) -> None:
    """Import slow modules in a background thread, so that the first Start or Run does not freeze the window
    (building torch's optimizer imports ``torch._dynamo``: about 2 s on a 2-core machine)."""
    import importlib
    import threading

    threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], daemon=True).start()
