"""Result layers in the viewer: add them, or refresh the ones the same run made before (never other layers);
the running result while samples arrive, the final one in view and selected."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer

from ..inference.layers import residual_layer, result_layers
from ..inference.predict import PartialResult, Prediction
from ._runner import TURN_MS, ReconstructJob, RunState

__all__ = ["ShowsResults", "add_or_update"]


def add_or_update(viewer: Any, data: np.ndarray, kwargs: dict[str, Any], owner: str) -> Image:
    """Refresh the layer of that name if the same owner made it (the same widget, input layer, model and task),
    else add a new layer: napari gives it a unique name, so a result never replaces a layer it does not own."""
    name = kwargs["name"]
    existing = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 - LayerList has no get()
    mine = isinstance(existing, Image) and existing.metadata.get("cvdm", {}).get("owner") == owner
    kwargs = {**kwargs, "metadata": {"cvdm": {**kwargs.get("metadata", {}).get("cvdm", {}), "owner": owner}}}
    if not mine:
        if existing is not None:
            show_info(f"a layer named '{name}' exists and belongs to another run; adding a new one beside it")
        return viewer.add_image(data, **kwargs)
    existing.data = data
    for key in ("scale", "translate", "units", "contrast_limits", "metadata"):
        if key in kwargs:
            setattr(existing, key, kwargs[key])
    return existing


class ShowsResults:
    """What Reconstruct does with results: the running mean and std while samples arrive, then the final layers
    one per short turn of the event loop, the mean in view and selected. Expects the widget's ``viewer``,
    ``runner``, ``status``, ``partial_layers``, ``_partial_planes`` and ``pending_layers``."""

    def _show_partial(self, part: PartialResult, job: ReconstructJob) -> None:
        """Show the running mean (now) and std (next turn of the event loop) of the samples finished so far; the
        sampler waits meanwhile."""
        if not self.runner.running or self.runner.stopping:
            return
        self._partial_planes[part.plane] = part.prediction
        prediction = part.prediction if part.n_planes == 1 else self._partial_stack(part)
        layers = result_layers(
            job.input_name, job.model.task, prediction, job.scale, job.translate, job.units, label=job.model.label
        )
        where = f" (plane {part.plane + 1} of {part.n_planes})" if part.n_planes > 1 else ""
        self.runner.detail = f"showing the mean and std of {part.done} of {part.n_samples} samples{where}"
        self.status.setText(self.runner.detail)

        def add(data: np.ndarray, kwargs: dict) -> None:
            if self.runner.running and not self.runner.stopping:
                layer = add_or_update(self.viewer, data, kwargs, job.owner)
                if layer not in self.partial_layers:
                    self.partial_layers.append(layer)
                self.viewer.layers.selection.active = self.partial_layers[0]  # the mean (napari selects new layers)

        add(*layers[0][:2])
        for data, kwargs, _ in layers[1:2]:  # the std, when the samples so far have a spread, a turn later
            QTimer.singleShot(TURN_MS, lambda data=data, kwargs=kwargs: add(data, kwargs))

    def _partial_stack(self, part: PartialResult) -> Prediction:
        """The running result of a stack: the planes finished or begun so far, zeros for the others."""
        blank = np.zeros_like(part.prediction.mean)
        planes = [self._partial_planes.get(p) for p in range(part.n_planes)]
        return Prediction(
            mean=np.stack([blank if q is None else q.mean for q in planes]),
            std=np.stack([blank if q is None else q.std for q in planes]),
            sample_std=None if part.prediction.sample_std is None else blank,  # marks the std as calibrated
        )

    def _remove_partial(self) -> None:
        for layer in self.partial_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.partial_layers = []

    def _on_done(self, prediction: Prediction | None, job: ReconstructJob) -> None:
        self.runner.detail = ""
        if prediction is None or self.parent() is None:  # cancelled, or its panel closed while it finished
            removed = bool(self.partial_layers)
            self._remove_partial()
            kept = self.runner.state is RunState.KEEPING
            what = "stopped before the first samples were finished" if kept else "cancelled"
            self.status.setText(f"{what}; the running result was removed" if removed else f"{what}; nothing added")
            return
        self.partial_layers = []
        layers = result_layers(
            job.input_name,
            job.model.task,
            prediction,
            job.scale,
            job.translate,
            job.units,
            with_samples=job.with_samples,
            with_schedule=job.with_schedule,
            label=job.model.label,
        )
        if prediction.residual is not None and job.residual_at is not None:
            residual = residual_layer(job.input_name, job.model.task, prediction, *job.residual_at, job.model.label)
            layers.insert(2, residual)
        # napari takes ~0.1-0.2 s per new layer: the mean now, the others one per turn of the event loop
        mean = add_or_update(self.viewer, *layers[0][:2], job.owner)
        self.viewer.layers.selection.active = mean
        check = "" if prediction.residual_rms is None else f"; residual {prediction.residual_rms:.2f}× the noise"
        std = " (its std hidden, one click away)" if job.model.stochastic and len(layers) > 1 else ""
        self.status.setText(f"done in {self.runner.elapsed():.1f} s: '{mean.name}'{std}{check}")
        rest = [(data, kwargs) for data, kwargs, _ in layers[1:]]
        self.pending_layers = len(rest) + 1
        QTimer.singleShot(TURN_MS, lambda: self._add_in_turns(rest, job.owner, mean))
        remarks = list(prediction.warnings)
        if job.with_schedule and prediction.schedule is None:
            remarks.append("this model uses a fixed schedule: there is no λ(x) map to show")
        if remarks:  # one notice per run, however many remarks
            show_warning(
                f"'{mean.name}': " + ("\n".join(f"• {r}" for r in remarks) if len(remarks) > 1 else remarks[0])
            )

    def _add_in_turns(self, layers: list[tuple[np.ndarray, dict]], owner: str, shown: Image) -> None:
        """Add the first of ``layers`` now and the others one per turn of the event loop, so the viewer never
        freezes for all of them; then select ``shown`` again (napari selects each layer it adds)."""
        if not layers:
            if shown in self.viewer.layers:
                self.viewer.layers.selection.active = shown
            self.pending_layers = 0
            return
        data, kwargs = layers[0]
        add_or_update(self.viewer, data, kwargs, owner)
        self.pending_layers = len(layers)  # the rest, and selecting the mean again
        QTimer.singleShot(TURN_MS, lambda: self._add_in_turns(layers[1:], owner, shown))
