"""Command-line options generated from frozen dataclasses, so that a default and its help live in one place.

A dataclass field becomes an option when its metadata names one (``field(..., metadata={"cli": "--lr"})``);
the type, the default and the help (from the class's numpy docstring) come from the field. Integers must be
positive unless the metadata gives another parser (``"parse": int``), numbers marked ``"positive": True`` must be
> 0; the dataclass validates the rest. No argparse
import happens in the core: this module only adds arguments to parsers it is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .physics.optics import field_help

__all__ = ["positive_int", "positive_float", "int_tuple", "add_options", "given_values", "from_args"]


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
    """The argparse type of a field annotation (``X | None`` → the type of ``X``; ``list[X]`` → ``X``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _parser_type(args[0])
    if typing.get_origin(annotation) is tuple:
        return int_tuple
    if typing.get_origin(annotation) is list:
        return _parser_type(args[0])
    return {int: positive_int, float: float, str: str, Path: Path, bool: bool}[annotation]


def _is_list(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _is_list(args[0])
    return typing.get_origin(annotation) is list


def _cli_fields(cls: type) -> Iterable[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "cli" in f.metadata:
            yield f, hints[f.name]


def _default_text(defaults: list[tuple[type, Any]], labels: dict[type, str], required: bool) -> str:
    """`` (default 8)``, `` (default sr 0.525, qpi 0.521)`` or nothing (required, flags, no default)."""
    shown = [(labels.get(c, c.__name__), d) for c, d in defaults if d is not None and not isinstance(d, bool)]
    if required or not shown:
        return ""
    if len(defaults) == 1 and defaults[0][0] not in labels:
        return f" (default {shown[0][1]})"
    return " (default " + ", ".join(f"{label} {d}" for label, d in shown) + ")"


def add_options(
    parser: argparse._ActionsContainer,
    classes: type | Iterable[type],
    only: Iterable[str] = (),
    keep_defaults: bool = True,
    required: Iterable[str] = (),
    labels: dict[type, str] | None = None,
) -> None:
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
    labels
        How the help names each class when several share an option (e.g. the task of an optics class).
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
        kind = f.metadata.get("parse") or _parser_type(annotation)
        kind = positive_float if kind is float and f.metadata.get("positive") else kind
        defaults = [(c, o.default) for c, o, _ in owners if o.default is not dataclasses.MISSING]
        text = field_help(cls, f.name).rstrip(".") + _default_text(defaults, labels or {}, f.name in required)
        kwargs: dict[str, Any] = {"type": kind, "help": text, "dest": f.name, "metavar": f.name.upper()}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar")
        if _is_list(annotation):
            kwargs["nargs"] = "+"
        if kind is bool:
            kwargs = {"help": text, "dest": f.name, "action": "store_true"}
        elif f.name in required or (not defaults and keep_defaults):
            kwargs["required"] = True
        else:
            kwargs["default"] = defaults[0][1] if keep_defaults and len(owners) == 1 else None
        if not option.startswith("-"):  # a positional argument: argparse names it itself
            kwargs.pop("dest"), kwargs.pop("required", None), kwargs.pop("metavar", None)
        parser.add_argument(*option.split("|"), **kwargs)


def given_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` whose options were given (not ``None``) in ``args``."""
    return {f.name: getattr(args, f.name) for f, _ in _cli_fields(cls) if getattr(args, f.name, None) is not None}


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls`` from the options given (the others keep the class's defaults)."""
    return cls(**given_values(cls, args))


#: Short names of classes that many commands share, for :func:`option_classes`.
ALIASES = {"sampling": "inference.predict.SamplingOptions"}


def option_classes(spec: str) -> list[tuple[list[type], list[str], list[str]]]:
    """``(classes, fields, required fields)`` of each token of a :data:`COMMANDS` spec."""
    import importlib

    from .tasks import TASKS

    out = []
    for token in spec.split():
        if token == "optics":
            out.append(([t.optics_class for t in TASKS.values()], [], []))
            continue
        path, _, fields = token.partition(":")
        module, _, name = ALIASES.get(path, path).rpartition(".")
        cls = getattr(importlib.import_module(f"napari_cvdm.{module}"), name)
        names = fields.split(",") if fields else []
        out.append(([cls], [n.rstrip("!") for n in names], [n.rstrip("!") for n in names if n.endswith("!")]))
    return out


def class_words(name: str) -> str:
    """``SamplingOptions`` → ``sampling options``."""
    import re

    return re.sub(r"(?<!^)([A-Z])", r" \1", name).lower()


def class_summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").replace("``", "")
