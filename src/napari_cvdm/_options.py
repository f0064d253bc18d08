"""Command-line options generated from frozen dataclasses, so that a default and its help live in one place.

A dataclass field becomes an option when its metadata names one (``field(..., metadata={"cli": "--lr"})``);
the type, the default and the help (from the class's numpy docstring) come from the field. Integers must be
positive unless the metadata gives another parser (``"parse": int``); the dataclass validates the rest. No argparse
import happens in the core: this module only adds arguments to parsers it is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

from .physics.optics import field_help

__all__ = ["positive_int", "positive_float", "int_tuple", "add_options", "given_values"]


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def int_tuple(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive integers such as ``1,2,2,4``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,2,4; got {text}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text}")
    return values


def _parser_type(annotation: Any) -> Any:
    """The argparse type of a field annotation (``X | None`` → the type of ``X``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _parser_type(args[0])
    if typing.get_origin(annotation) is tuple:
        return int_tuple
    return {int: int, float: float, str: str}[annotation]


def _cli_fields(cls: type) -> Iterable[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "cli" in f.metadata:
            yield f, hints[f.name]


def add_options(parser: argparse._ActionsContainer, classes: type | Iterable[type], only: Iterable[str] = (),
                keep_defaults: bool = True, required: Iterable[str] = ()) -> None:
    """Add the options of one dataclass, or of several that share option names (e.g. the optics of each task).

    Parameters
    ----------
    parser
        A parser or argument group.
    classes
        The dataclass(es). An option shared by several classes is added once; its help lists each default.
    only
        Field names to add (default: every field with a ``cli`` name).
    keep_defaults
        Show the defaults as the options' defaults; otherwise the options default to ``None`` ("not given"),
        for classes whose defaults depend on something else (the task, the model).
    required
        Field names whose option must be given.
    """
    classes = [classes] if isinstance(classes, type) else list(classes)
    only, required = set(only), set(required)
    seen: dict[str, list[tuple[type, dataclasses.Field, Any]]] = {}
    for cls in classes:
        for f, annotation in _cli_fields(cls):
            if not only or f.name in only:
                seen.setdefault(f.metadata["cli"], []).append((cls, f, annotation))
    for option, owners in seen.items():
        cls, f, annotation = owners[0]
        kind = f.metadata.get("parse") or {int: positive_int}.get(_parser_type(annotation), _parser_type(annotation))
        defaults = [(c, o.default) for c, o, _ in owners if o.default is not dataclasses.MISSING]
        text = field_help(cls, f.name).rstrip(".")
        if len(classes) > 1:
            text += " (default " + ", ".join(f"{c.__name__} {d}" for c, d in defaults) + ")" if defaults else ""
        elif defaults and defaults[0][1] is not None:
            text += f" (default {defaults[0][1]})"
        kwargs: dict[str, Any] = {"type": kind, "help": text, "dest": f.name, "metavar": f.name.upper()}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar")
        if f.name in required or (not defaults and keep_defaults):
            kwargs["required"] = True
        else:
            kwargs["default"] = defaults[0][1] if keep_defaults and len(owners) == 1 else None
        parser.add_argument(option, **kwargs)


def given_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` whose options were given (not ``None``) in ``args``."""
    return {f.name: getattr(args, f.name) for f, _ in _cli_fields(cls)
            if getattr(args, f.name, None) is not None}
