"""Model files made or opened in this napari session, shared by the Fine-tune and Reconstruct widgets."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

__all__ = ["SessionModels", "SESSION_MODELS"]


class SessionModels:
    """Model files saved or opened in this session, in order; ``changed`` fires when one is added.

    They are known by their path, never by a short name, so a file called ``sr.safetensors`` cannot hide the
    bundled ``sr`` model.
    """

    changed = Signal()

    def __init__(self) -> None:
        self._paths: list[Path] = []

    def add(self, path: str | Path) -> None:
        """Register a model file (once; a file saved again is not listed twice)."""
        path = Path(path).resolve()
        if path not in self._paths:
            self._paths.append(path)
        self.changed.emit()

    def paths(self) -> list[Path]:
        """The files, in the order they were added."""
        return list(self._paths)


#: The session's registry (one per process).
SESSION_MODELS = SessionModels()
