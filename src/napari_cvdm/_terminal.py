"""Progress bars on a terminal for the command line (silent when stderr is not a terminal: logs, pipes, CI)."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["progress_bar", "counter", "sampling_bar", "plain_warnings"]


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A progress bar on a terminal; silent when stderr is not one (logs, pipes, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())


def counter(bar: Any) -> Callable[[int, int], None]:
    """``progress(done, total)`` that moves ``bar`` (and sets its total, which may be known only later)."""

    def move(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return move


def sampling_bar(desc: str) -> Callable[[Any], None]:
    """A sampling callback that moves a bar over the denoiser passes (samples × steps × planes)."""
    bars: list[Any] = []

    def report(progress: Any) -> None:
        if not bars:
            bars.append(progress_bar(progress.total, desc, "pass"))
        counter(bars[0])(progress.done, progress.total)
        if progress.done >= progress.total:
            bars[0].close()

    return report


@contextlib.contextmanager
def plain_warnings(command: str) -> Iterator[None]:
    """Warnings printed as ``napari-cvdm COMMAND: warning: …`` on stderr, each once, without Python's file and
    source line (which say nothing to a microscopist)."""
    seen: set[str] = set()

    def show(message: Any, *_: Any, **__: Any) -> None:
        if str(message) not in seen:
            seen.add(str(message))
            print(f"napari-cvdm {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
