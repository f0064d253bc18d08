"""Forms generated from the dataclasses the command line is generated from: one box per chosen field, its tooltip
from the class's docstring and its default from the class, so that a field reads the same in ``--help`` and in the
panel, and the form's :meth:`DataclassForm.value` builds (and so validates) the same object the command line
builds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ..physics.optics import field_help
from ._common import float_spin, int_spin

__all__ = ["Box", "DataclassForm"]


@dataclass(frozen=True)
class Box:
    """How one field is edited.

    Attributes
    ----------
    label
        The row's label.
    low, high
        The range of a number.
    decimals
        0 for an integer box, else the decimals shown.
    default
        The value shown first (default: the field's own).
    auto
        For a field whose ``None`` lets the program choose: the text the lowest value shows (e.g. ``"auto"``);
        that value stands for ``None``.
    choices
        For a text field: the values offered.
    step
        The step of the arrows (default: one unit of the last decimal shown, ×10 for decimals).
    """

    label: str
    low: float = 0
    high: float = 0
    decimals: int = 0
    default: Any = None
    auto: str | None = None
    choices: Sequence[str] | None = None
    step: float | None = None


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of ``cls`` (``None`` when it has none)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _make_box(spec: Box, value: Any, tip: str) -> QWidget:
    """The widget of one field, showing ``value`` (``None``: the ``auto`` text)."""
    if spec.choices is not None:
        box = QComboBox()
        box.addItems(list(spec.choices))
        box.setCurrentText(str(value))
        box.setToolTip(tip)
        return box
    shown = spec.low if value is None else value
    if spec.decimals == 0:
        box = int_spin(int(spec.low), int(spec.high), int(shown), tip)
    else:
        box = float_spin(spec.low, spec.high, float(shown), spec.decimals, tip)
    if spec.auto is not None:
        box.setSpecialValueText(spec.auto)
    if spec.step is not None:
        box.setSingleStep(spec.step)
    return box


class DataclassForm:
    """One labelled box per field of ``cls`` named in ``boxes`` (in that order), explained and defaulted from the
    class itself; the rows go into a panel's form (:meth:`add_rows`).

    Parameters
    ----------
    cls
        A dataclass the command line takes options from (e.g. ``SamplingOptions``, ``TrainConfig``).
    boxes
        Field name → how it is edited.
    """

    def __init__(self, cls: type, boxes: dict[str, Box]) -> None:
        self.cls, self.specs = cls, dict(boxes)
        self.boxes: dict[str, QWidget] = {}
        for name, spec in self.specs.items():
            value = spec.default if spec.default is not None else _default(cls, name)
            self.boxes[name] = _make_box(spec, value, field_help(cls, name))

    def add_rows(self, form: QFormLayout) -> None:
        """Add a labelled row per box to ``form``."""
        for name, box in self.boxes.items():
            form.addRow(self.specs[name].label, box)

    def field(self, name: str) -> Any:
        """The value in the box of field ``name`` (``None`` where the box shows its ``auto`` text)."""
        box, spec = self.boxes[name], self.specs[name]
        if isinstance(box, QComboBox):
            return box.currentText()
        assert isinstance(box, (QSpinBox, QDoubleSpinBox))
        if spec.auto is not None and box.value() == box.minimum():
            return None
        return box.value()

    def values(self) -> dict[str, Any]:
        """Field name → the value in its box."""
        return {name: self.field(name) for name in self.boxes}

    def value(self, **given: Any) -> Any:
        """An instance of the class from the boxes and ``given`` (fields the form does not show, or values derived
        from the boxes); the class's own checks raise ``ValueError`` for impossible values."""
        return self.cls(**{**self.values(), **given})
