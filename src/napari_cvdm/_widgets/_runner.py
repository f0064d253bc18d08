"""Running one long job at a time from a widget: a worker thread, a progress bar, a status line, a stop button
(and optionally a "stop and keep" button).

:class:`RunController` owns the worker; the job receives a :class:`JobContext` through which it reports progress,
asks whether to go on (the stop button, or napari asking the worker to quit when the viewer closes) or to stop
and keep what it has, and hands values to the GUI thread. Failures come back as notifications, never as a dead
viewer.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton

from ..diffusion.sampler import SamplingCancelled, SamplingProgress, Stop
from ..inference.predict import PartialResult, Prediction, SamplingOptions
from ..inference.reconstructor import Reconstructor

__all__ = ["JobContext", "RunController", "TURN_MS", "describe_error", "format_eta", "settle_garbage"]

#: Pause (ms) between two pieces of GUI work, such as adding two layers: a zero-delay timer runs before the
#: viewer's own timers and painting, so two of them in a row freeze the window as long as both together.
TURN_MS = 15


def settle_garbage() -> None:
    """Collect the garbage now and leave every object alive out of later full collections (:func:`gc.freeze`).

    A napari window holds a few hundred thousand Python objects; the collector's full passes walk all of them
    and hold the interpreter while they do, whichever thread allocated last — the window froze for a few hundred
    milliseconds each time a pass fell on the GUI thread while results arrived. Called when a job starts: the
    passes during the job then walk only what the job made, and what became garbage since the last call (a
    closed layer, say) is collected here rather than kept."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def format_eta(done: int, total: int, seconds_per_unit: float | None, unit: str = "denoiser passes") -> str:
    """``"about 40 s left (12 of 128 denoiser passes)"`` (no estimate until a rate has been measured)."""
    counted = f"{done} of {total} {unit}"
    if seconds_per_unit is None or not 0 < done < total:
        return counted
    left = seconds_per_unit * (total - done)
    eta = f"about {left:.0f} s left" if left < 120 else f"about {left / 60:.1f} min left"
    return f"{eta} ({counted})"


def describe_error(err: BaseException) -> str:
    """A worker's error in a microscopist's words (running out of memory says what to change)."""
    message = str(err)
    if isinstance(err, (MemoryError, RuntimeError)) and "alloc" in message.lower():
        return (
            "not enough memory for this image with these settings: use fewer samples, or a smaller crop "
            f"({type(err).__name__})"
        )
    return message


class _Failure:
    """An error raised in the worker, carried back as a value (superqt treats a returned exception as its own)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Bridge(QObject):
    """Crosses from the worker thread to the GUI thread."""

    call = Signal(object, object)  # function, arguments


class RunState(Enum):
    """Where a run stands: the controller's one state, set in the GUI thread and read by the job at each check."""

    IDLE = "idle"  #: nothing runs
    RUNNING = "running"
    STOPPING = "stopping"  #: Cancel (or Stop) pressed: the job ends at its next check and keeps nothing
    KEEPING = "keeping"  #: Stop and keep pressed: the job ends as soon as what it finished can be kept
    CLOSED = "closed"  #: the widget is gone: the job ends at its next check, and no Qt object is touched again


class JobContext:
    """What a job running in the worker thread may do."""

    def __init__(self, controller: RunController) -> None:
        self._controller = controller

    def keep_going(self) -> bool:
        """``False`` once the user pressed stop or napari asked the worker to quit (the viewer is closing)."""
        worker = self._controller.worker
        return not (self._controller.stopping or (worker is not None and worker.abort_requested))

    def keep_requested(self) -> bool:
        """Whether the user asked to stop and keep what is done (the "Stop and keep" button)."""
        return self._controller.state is RunState.KEEPING

    def progress(self, done: int, total: int, unit: str = "denoiser passes") -> None:
        """Move the progress bar and the time-left estimate."""
        self.in_gui(self._controller.show_progress, done, total, unit)

    def in_gui(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` in the GUI thread (layers, plots and labels are only touched there)."""
        self._controller.bridge.call.emit(fn, args)

    def in_gui_and_wait(self, fn: Callable[..., Any], *args: Any, timeout_s: float = 10.0) -> None:
        """Call ``fn(*args)`` in the GUI thread and pause until it and what it queued for :data:`TURN_MS` later
        have run (or the job is stopped, or ``timeout_s`` s have passed): adding a layer takes the GUI
        thread a few hundred milliseconds when the sampler competes with it for the CPU, and a fraction of that
        alone."""
        done = threading.Event()

        def call(*values: Any) -> None:
            try:
                fn(*values)
            finally:
                QTimer.singleShot(TURN_MS, done.set)  # after the calls fn queued with singleShot(TURN_MS)

        self.in_gui(call, *args)
        deadline = time.perf_counter() + timeout_s
        while not done.wait(0.05) and self.keep_going() and time.perf_counter() < deadline:
            pass


class RunController:
    """One job at a time: starts it in a napari worker, wires the buttons, progress bar and status label.

    Parameters
    ----------
    start_button, stop_button
        Disabled / enabled while a job runs.
    progress_bar, status
        Progress and messages.
    what
        Names the job in failure notifications (``"CVDM reconstruction"``).
    keep_button
        Enabled while a job runs, like ``stop_button`` (its action is the widget's: :meth:`stop_and_keep`).
    """

    def __init__(
        self,
        start_button: QPushButton,
        stop_button: QPushButton,
        progress_bar: QProgressBar | None,
        status: QLabel,
        what: str,
        keep_button: QPushButton | None = None,
    ) -> None:
        self.start_button, self.stop_button, self.bar, self.status, self.what = (
            start_button,
            stop_button,
            progress_bar,
            status,
            what,
        )
        self.run_buttons = [b for b in (stop_button, keep_button) if b is not None]
        self.worker = None
        #: The one state of the run (:class:`RunState`).
        self.state = RunState.IDLE
        #: A second status line under the progress (e.g. "showing the mean of 2 of 8 samples").
        self.detail = ""
        self.bridge = _Bridge()
        self.bridge.call.connect(lambda fn, args: None if self.closed else fn(*args))
        self._t0 = 0.0
        self._first: tuple[int, float] | None = None  # (units done, time) at the first report of the run
        for button in self.run_buttons:
            button.setEnabled(False)
        # closing the widget or the viewer destroys the buttons: the job stops at its next check (napari quitting
        # asks the worker to quit, which JobContext.keep_going sees as well)
        status.destroyed.connect(lambda *_: self._close())

    def _close(self) -> None:
        """The widget is gone: stop the job, and touch no Qt object from now on."""
        self.state = RunState.CLOSED

    @property
    def closed(self) -> bool:
        """Whether the widget is gone."""
        return self.state is RunState.CLOSED

    @property
    def stopping(self) -> bool:
        """Whether the job is to end at its next check, keeping nothing (Cancel, or the widget closed)."""
        return self.state in (RunState.STOPPING, RunState.CLOSED)

    @property
    def running(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def start(self, job: Callable[[JobContext], Any], on_done: Callable[[Any], None], message: str) -> None:
        """Run ``job(context)`` in a worker thread; ``on_done(result)`` runs in the GUI thread when it returns
        (not when it fails: the failure becomes a notification)."""
        context = JobContext(self)

        def work() -> Any:
            try:
                return job(context)
            except Exception as err:  # noqa: BLE001 - every failure reaches the user as a notification
                return _Failure(err)

        self.state = RunState.RUNNING
        self.detail = ""
        self._first = None
        self.worker = create_worker(work, _start_thread=False)
        self.worker.returned.connect(lambda result: self._returned(result, on_done))
        self.worker.finished.connect(self._finished)
        self.start_button.setEnabled(False)
        for button in self.run_buttons:
            button.setEnabled(True)
        if self.bar is not None:
            self.bar.setRange(0, 0)  # busy until the first step reports
        self.status.setText(f"{message}\npreparing…")
        settle_garbage()
        self._t0 = time.perf_counter()
        self.worker.start()

    def stop(self, message: str = "stopping…") -> None:
        """Ask the job to stop at its next check."""
        if self.running and self.state in (RunState.RUNNING, RunState.KEEPING):
            self.state = RunState.STOPPING
            self.status.setText(message)

    def stop_and_keep(self, message: str) -> None:
        """Ask the job to stop and keep what it has finished (it decides when that is)."""
        if self.running and self.state is RunState.RUNNING:
            self.state = RunState.KEEPING
            self.status.setText(message)

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self._t0

    def seconds_per_unit(self, done: int) -> float | None:
        """Seconds per unit of work measured from the first report on (what comes before it — loading, the
        schedule of the image, the first pass's warm-up — says nothing of the rest); ``None`` until a second
        report."""
        now = time.perf_counter()
        if self._first is None or done < self._first[0]:
            self._first = (done, now)
            return None
        units = done - self._first[0]
        return (now - self._first[1]) / units if units > 0 else None

    def show_progress(self, done: int, total: int, unit: str) -> None:
        """Progress bar and time left (GUI thread)."""
        if self.closed:
            return
        if self.bar is not None:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
        if self.state is RunState.RUNNING:
            eta = format_eta(done, total, self.seconds_per_unit(done), unit)
            self.status.setText(f"{eta}\n{self.detail}" if self.detail else eta)

    def _returned(self, result: Any, on_done: Callable[[Any], None]) -> None:
        if self.closed:
            return
        if isinstance(result, _Failure):
            message = describe_error(result.error)
            self.status.setText(f"failed: {message}")
            show_error(f"{self.what} failed: {message}")
            return
        on_done(result)

    def _finished(self) -> None:
        self.worker = None
        if self.closed:
            return
        self.state = RunState.IDLE
        self.start_button.setEnabled(True)
        for button in self.run_buttons:
            button.setEnabled(False)
        if self.bar is not None and self.bar.maximum() == 0:
            self.bar.setRange(0, 1)


@dataclass(frozen=True)
class ReconstructJob:
    """One reconstruction: the model, the input as the model takes it (checked: :meth:`Reconstructor.given`), the
    options and where results go."""

    model: Reconstructor
    data: Any
    options: SamplingOptions
    input_name: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...] | None
    with_samples: bool
    with_schedule: bool
    owner: str
    residual_at: tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...] | None] | None = None

    def run(self, context: JobContext, on_partial: Callable[[PartialResult], None] | None = None) -> Prediction | None:
        """Sample in the worker thread (``None`` when cancelled). With ``options.progressive``, ``on_partial``
        gets each running result in the GUI thread, and "stop and keep" ends the run at the next step with the samples
        finished in rounds so far (the result then has fewer samples, and says so in its warnings; ``None`` when no
        round has finished yet)."""

        def callback(progress: SamplingProgress) -> bool | Stop:
            context.progress(progress.done, progress.total)
            if progress.partial is not None and on_partial is not None:
                context.in_gui_and_wait(on_partial, progress.partial)  # the sampler waits while layers are added
            if context.keep_requested():  # before the first round: stops at once, with nothing to keep
                return Stop.KEEP
            return context.keep_going()

        try:
            return self.model.predict_with(self.data, self.options, callback)
        except SamplingCancelled:
            return None
