"""Progress and cancellation of a sampling run: what the sampler reports after every step, and what a callback may
answer (go on, cancel, or stop and keep the samples finished so far)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["SamplingProgress", "SamplingCancelled", "KeepRequested", "Stop", "ProgressCallback", "ask", "cancel_check"]


@dataclass(frozen=True)
class SamplingProgress:
    """Progress of a sampling run.

    Attributes
    ----------
    done
        Denoiser steps finished so far (over all chunks of samples).
    total
        Steps in the whole run (``steps × number of chunks``).
    partial
        After each round of :func:`sample_in_rounds`: the samples finished so far. The sampler hands their
        normalised values ``(N_done, C, H, W)``; :func:`~napari_cvdm.inference.predict.predict_image` turns them into a
        :class:`~napari_cvdm.inference.predict.PartialResult` (running mean and std in physical units) before its
        callback sees them. ``None`` at every other call.
    """

    done: int
    total: int
    partial: Any = None


class SamplingCancelled(RuntimeError):
    """Raised when the progress callback asks to stop."""


class KeepRequested(SamplingCancelled):
    """Raised when the callback answers :attr:`Stop.KEEP`: :func:`sample_in_rounds` catches it and returns the
    samples finished so far; anywhere else it cancels like ``False``."""


class Stop(Enum):
    """What a progress callback may answer besides ``None``/``True`` (go on) and ``False`` (cancel)."""

    KEEP = "keep"  #: stop now and keep the samples finished so far (:func:`sample_in_rounds`)


#: Called after every step; returning ``False`` cancels the run, :attr:`Stop.KEEP` stops it and keeps what is done.
ProgressCallback = Callable[[SamplingProgress], "bool | Stop | None"]


def ask(callback: ProgressCallback | None, progress: SamplingProgress) -> None:
    """Report ``progress``; raise :class:`SamplingCancelled` when the callback answers ``False`` and
    :class:`KeepRequested` when it answers :attr:`Stop.KEEP`."""
    if callback is None:
        return
    answer = callback(progress)
    if answer is Stop.KEEP:
        raise KeepRequested(f"stopped after {progress.done} of {progress.total} steps")
    if answer is False:
        raise SamplingCancelled(f"sampling cancelled after {progress.done} of {progress.total} steps")


def cancel_check(callback: ProgressCallback | None, progress: Callable[[], SamplingProgress]) -> Callable[[], None]:
    """A function that asks ``callback`` (with the current progress) whether to go on, and raises
    :class:`SamplingCancelled` when it answers ``False`` (:class:`KeepRequested` for :attr:`Stop.KEEP`):
    checked between the tiles of a large image."""

    def check() -> None:
        ask(callback, progress())

    return check
