"""One schema for the optics of every task: frozen dataclasses of plain numbers (lengths in µm).

An optics class lists its fields with defaults (the bundled model's optics) and validates them in
``__post_init__``; :class:`Optics` gives every such class the same dictionary form, which model files,
simulation records and TIFF metadata store, and the same way back. A field may carry the command-line
option that sets it (``field(metadata={"cli": "--wavelength"})``); the help text comes from the class's
numpy-style docstring, so a default and its description live in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["Optics", "field_help", "optics_option_names"]

OpticsT = TypeVar("OpticsT", bound="Optics")


def field_help(cls: type, name: str) -> str:
    """The description of field ``name`` in the ``Parameters`` section of ``cls``'s numpy docstring."""
    lines = (cls.__doc__ or "").splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if name in (part.strip() for part in line.split(",")):  # "name" or "a, name, b" (fields described together)
            indent = len(line) - len(line.lstrip())
            for follow in lines[i + 1 :]:
                if not follow.strip() or len(follow) - len(follow.lstrip()) <= indent:
                    break
                out.append(follow.strip())
            break
    return " ".join(out).replace("``", "")


class Optics:
    """Mixin of the optics dataclasses (:class:`~napari_cvdm.physics.widefield.WidefieldOptics`,
    :class:`~napari_cvdm.physics.fresnel.QPIOptics`): one dictionary schema for all of them."""

    def to_dict(self) -> dict[str, Any]:
        """``{field: value}`` with JSON types (recorded in model files, TIFF metadata and simulation records)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[OpticsT], values: dict[str, Any]) -> OpticsT:
        """The optics recorded by :meth:`to_dict` (missing fields take their defaults).

        Raises
        ------
        ValueError
            Unknown fields (e.g. the optics of another task) or values out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; it has {', '.join(sorted(names))}")
        return cls(**values)

    def replace(self: OpticsT, **changes: Any) -> OpticsT:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def describe(self, names: Any = None) -> str:
        """The fields users set (or ``names`` of them), in words: ``"NA 1.3, emission wavelength (µm) 0.525, …"``."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        shown = [f for f in fields if "cli" in f.metadata and (names is None or f.name in names)]
        values = [(f.metadata.get("label", f.name), getattr(self, f.name)) for f in shown]
        return ", ".join(f"{label} {value:.3g}" for label, value in values if value is not None)


def optics_option_names() -> dict[str, str]:
    """Every optics field of every optics class defined so far, by the command-line option that sets it
    (``{"dz_um": "--dz", ...}``): what a message names when a field is given to a task it does not apply to."""
    names: dict[str, str] = {}
    classes = list(Optics.__subclasses__())
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        names.update({f.name: f.metadata.get("cli", f.name) for f in dataclasses.fields(cls)})
    return names
