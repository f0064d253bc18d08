"""Small Qt pieces shared by the Reconstruct and Fine-tune widgets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QSpinBox, QWidget

__all__ = ["CHOOSE_FILE", "Failure", "catching", "int_spin", "float_spin", "refill", "offer_model_file"]

#: The last entry of a model list: opens a file dialog.
CHOOSE_FILE = "Model file…"


class Failure:
    """An error raised in a worker, carried back as a value (superqt treats a returned exception as its own)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def catching(work: Callable[[], Any]) -> Callable[[], Any]:
    """``work`` for a worker thread: its result, or a :class:`Failure` for any error, so that every failure
    reaches the user as a notification in the GUI thread instead of killing the viewer."""

    def run() -> Any:
        try:
            return work()
        except Exception as err:  # noqa: BLE001
            return Failure(err)

    return run


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
    box.setSingleStep(10 ** -decimals * 10)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def refill(box: QComboBox, items: Sequence[str]) -> None:
    """Replace a list's items, keeping the current choice where it still exists (else the first), without
    emitting change signals."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(list(items))
    box.setCurrentIndex(max(box.findText(current), 0))
    box.blockSignals(False)


def offer_model_file(parent: QWidget, box: QComboBox, index: int, title: str,
                     add: Callable[[str | Path], None]) -> None:
    """When the :data:`CHOOSE_FILE` entry of ``box`` was picked, ask for a model file and ``add`` it (or go
    back to the first entry if the dialog was cancelled)."""
    if box.itemText(index) != CHOOSE_FILE:
        return
    path, _ = QFileDialog.getOpenFileName(parent, title, "", "CVDM models (*.safetensors)")
    if path:
        add(path)
    else:
        box.setCurrentIndex(0)
