"""What an image's file or layer states of its optics — the pixel size and, for brightfield planes, their defocus from
the spacing of the focal planes — against the optics a reconstruction runs at: which of them a model given no optics
takes over (:func:`stated_changes`), and the warning where a run's defocus contradicts them (:func:`defocus_warning`;
the pixel size: :meth:`~napari_cvdm.tasks.base.Task.pixel_size_warning`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..physics.optics import Optics
from ..tasks import Task
from ..tasks.base import PIXEL_SIZE_TOLERANCE
from ..tasks.records import CheckedImage, times_off
from .similarity import out_of_reach

__all__ = [
    "STATED_TOLERANCE",
    "stated_changes",
    "stated_values",
    "image_stated",
    "Taken",
    "taken",
    "changes_from",
    "in_words",
    "stated_note",
    "reads_off_image",
    "defocus_warning",
]

#: A stated value closer than this (relative) to the run's is the same (file metadata rounds).
STATED_TOLERANCE = 0.02


def stated_changes(task: Task, image: CheckedImage, optics: Optics, given: Collection[str] = ()) -> dict[str, float]:
    """The optics fields (field → value) the image's file or layer states that differ from ``optics``, as a model
    runs at them where the user did not give them (``given``: the fields the user set, which the file never
    overrides): the defocus of brightfield planes and the pixel size, each where it is more than
    :data:`STATED_TOLERANCE` off — given nothing, the pixel size of a task that reads the rest of its optics off
    the image (:attr:`Task.reads_optics_off_image`: sr) only beyond
    :data:`~napari_cvdm.tasks.base.PIXEL_SIZE_TOLERANCE` times, as that estimate is no closer to the truth than the
    model's own optics for a nearby pixel size. Optics with a defocus (qpi) take the file's values only where pixel
    size and defocus are then both known (given or stated): the Fresnel number p²/(λ·dz) needs both, and larger
    pixels come with longer defocus, so one alone moves it further from the truth than the model's own optics."""
    return changes_from(task, image_stated(image, optics), optics, given)


def image_stated(image: CheckedImage, optics: Optics) -> dict[str, float]:
    """What ``image``'s file or layer states of the fields of ``optics`` (:func:`stated_values`)."""
    return stated_values(None if image.pixel_um is None else float(image.pixel_um[-1]), image.dz_um, optics)


def stated_values(pixel_um: float | None, dz_um: float | None, optics: Optics) -> dict[str, float]:
    """What a file or layer states of the fields of ``optics`` (field → value, µm): its pixel size, and the planes'
    defocus where ``optics`` has one; ``None`` is not stated."""
    stated = {} if pixel_um is None else {"pixel_um": float(pixel_um)}
    if dz_um is not None and "dz_um" in optics.to_dict():
        stated["dz_um"] = float(dz_um)
    return stated


def changes_from(task: Task, stated: dict[str, float], optics: Optics, given: Collection[str] = ()) -> dict[str, float]:
    """:func:`stated_changes` of what a file or layer states (:func:`stated_values`)."""
    own = optics.to_dict()
    if "dz_um" in own and not {"pixel_um", "dz_um"} <= {*stated, *given}:
        return {}
    estimated = task.reads_optics_off_image and not given
    limits = {"pixel_um": PIXEL_SIZE_TOLERANCE if estimated else 1.0 + STATED_TOLERANCE}
    return {
        k: v
        for k, v in stated.items()
        if k not in given and times_off(v, own[k]) > limits.get(k, 1.0 + STATED_TOLERANCE)
    }


def in_words(field: str, value: float) -> str:
    """A stated pixel size or defocus (µm) in words: ``"pixels of 300.0 nm"``, ``"planes at ±2 µm"``."""
    return f"pixels of {value * 1000:.1f} nm" if field == "pixel_um" else f"planes at ±{value:g} µm"


def reads_off_image(task: Task, changes: dict[str, float]) -> bool:
    """Whether optics ``changes`` (field → value) are the pixel size alone for a task that reads the rest off the
    image (sr): the enlargement then comes from the image's spectrum, not from the changes."""
    return set(changes) == {"pixel_um"} and task.reads_optics_off_image


@dataclass(frozen=True)
class Taken:
    """What a model run at the options given takes from what an image's file or layer states (:func:`taken`).

    Attributes
    ----------
    changes
        The stated fields it runs at beside those given (field → value); for a refusal, those it would have run at.
    dropped
        The stated fields left out because they would put the optics out of the model's reach (most likely a unit
        wrong in the file), while the options given alone would not.
    why
        Why the optics are out of reach (:func:`~napari_cvdm.inference.similarity.out_of_reach`), or ``None``.
    refused
        Whether the run is refused: the options given, with or without the file's values, out of reach.
    """

    changes: dict[str, float]
    dropped: dict[str, float]
    why: str | None
    refused: bool


def taken(task: Task, stated: dict[str, float], own: Optics, given: dict[str, float]) -> Taken:
    """What a model of optics ``own`` given the user's changes ``given`` (field → value) takes from what an image
    states (:func:`stated_values`; :func:`changes_from`) and whether the result is within its reach — the one decision
    the run (:class:`~napari_cvdm.inference.optics_match.ModelAtFileOptics`) and the note before it
    (:func:`stated_note`) share."""
    changes = changes_from(task, stated, task.optics_with(given, own), given)
    merged = {**given, **changes}
    why = None if reads_off_image(task, merged) else out_of_reach(task, own, merged)
    if why is None:
        return Taken(changes, {}, None, False)
    if not changes or out_of_reach(task, own, given):
        return Taken(changes, {}, why, True)
    return Taken({}, changes, why, False)


def stated_note(task: Task, stated: dict[str, float], own: Optics, given: dict[str, float]) -> str:
    """What a model of optics ``own`` given the user's changes ``given`` (field → value) takes from what an image's
    layer states (:func:`stated_values`), in words for the optics form, before anything runs — and where the optics
    are out of its reach (:func:`taken`), what will happen.

    Raises
    ------
    ValueError
        The layer states values no optics can have (the run would fail with the same message).
    """
    t = taken(task, stated, own, given)
    task.optics_with({**given, **t.changes, **t.dropped}, own)  # a value no optics can have: ValueError, as the run
    if t.refused:
        layer = " with the layer's" if t.changes else ""
        return f"The optics above{layer} are out of the model's reach: {t.why}. The run will be refused; check them."
    if not stated:
        return "The layer states no pixel size (its scale is in pixels): the optics above run."
    said = " and ".join(in_words(k, v) for k, v in stated.items())
    if t.dropped:
        return (
            f"The layer states {said}, but {t.why}: its scale is probably in a wrong unit; the model runs without it."
        )
    if t.changes:
        what = "them" if t.changes == stated else " and ".join(in_words(k, v) for k, v in t.changes.items())
        rest = ", its NA read off the image" if task.reads_optics_off_image and not given else ", the rest as above"
        return f"The layer states {said}: the model runs at {what}{rest}."
    if any(k in given for k in stated):
        return f"The layer states {said}; the values you set above win."
    if "dz_um" in own.to_dict() and not {"pixel_um", "dz_um"} <= {*stated, *given}:
        lacking, field, known = (
            ("plane spacing", "defocus dz", "pixel size")
            if "dz_um" not in stated
            else ("pixel size", "pixel size", "defocus")
        )
        return (
            f"The layer states {said} but no {lacking}: set the {field} (and the wavelength) above and the layer's "
            f"{known} fills in the rest (the Fresnel number needs both); otherwise the optics above run."
        )
    return f"The layer states {said}, close enough to the optics above: they run."


def defocus_warning(dz_um: float | None, optics: Optics) -> str | None:
    """A warning when the defocus its planes' stated spacing gives (µm) differs from the ``dz_um`` of ``optics`` (those
    the run used: the ones given, or the method's own) by more than :data:`STATED_TOLERANCE`; else ``None``."""
    run = optics.to_dict().get("dz_um")
    if dz_um is None or run is None or times_off(dz_um, run) <= 1.0 + STATED_TOLERANCE:
        return None
    return (
        f"the spacing of the planes (from the file or layer) puts them at ±{dz_um:g} µm, but this run took ±{run:g} µm "
        f"(the --dz given, or the method's own): the phase scales with the defocus; give the right one (--dz "
        f"{dz_um:g}, or the optics form)"
    )
