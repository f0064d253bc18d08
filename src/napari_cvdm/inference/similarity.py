"""What an enlargement by physics similarity means for a model, in words: outside the range it covers (a warning
with the result, :func:`similarity_remark`), or so far outside that the optics are taken for a mistake and not run
(:func:`similarity_refusal`, :func:`out_of_reach`)."""

from __future__ import annotations

from ..physics.optics import Optics
from ..tasks import Task

__all__ = ["similarity_remark", "SIMILARITY_REACH", "similarity_refusal", "out_of_reach"]


def similarity_remark(task: Task, scale: float) -> str | None:
    """A warning when the enlargement lies outside what the model covers (:meth:`Task.similarity_range`)."""
    low, high = task.similarity_range()
    if low <= scale <= high:
        return None
    if scale > high:
        what = (
            f"enlarged {scale:.2g}× to look like an image of the model's optics (it covers {low:g}–{high:g}×): the "
            "camera undersamples for it, or the resolution is far lower, so fine detail is guessed"
        )
    else:
        what = (
            f"shrunk to {scale:.2g}× to look like an image of the model's optics (it covers {low:g}–{high:g}×): "
            "detail finer than the model's pixels is lost"
        )
    return f"the image was {what}; compare with the classical methods, or fine-tune the model for your optics"


#: How far beyond the enlargements a model covers (:meth:`Task.similarity_range`) it still runs, as a factor on either
#: side; further, the optics are taken for a mistake (a unit, a field mixed up) and not run: a qpi pair at
#: ``--dz 0.01`` would be enlarged 10×, a hundred times the pixels, for a result no model has seen the like of.
SIMILARITY_REACH = 2.0


def similarity_refusal(task: Task, scale: float) -> str | None:
    """Why the enlargement ``scale`` is not run — more than :data:`SIMILARITY_REACH` times beyond the range the
    model covers (:meth:`Task.similarity_range`), in words; ``None`` within reach."""
    low, high = task.similarity_range()
    if low / SIMILARITY_REACH <= scale <= high * SIMILARITY_REACH:
        return None
    how = "enlarged" if scale > 1 else "shrunk"
    return (
        f"the model would have to see the image {how} {scale:.2g}× to match its own optics (it covers {low:g}–"
        f"{high:g}× and runs {low / SIMILARITY_REACH:g}–{high * SIMILARITY_REACH:g}×)"
    )


def out_of_reach(task: Task, own: Optics, changes: dict[str, float]) -> str | None:
    """Why a model of ``task`` with optics ``own`` cannot run at ``own`` with ``changes`` (field → value)
    (:func:`similarity_refusal`), or ``None`` (no changes: its own optics)."""
    if not changes:
        return None
    return similarity_refusal(task, task.similarity_scale(own, task.optics_with(changes, own)))
