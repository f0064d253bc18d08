"""Models made in this napari session, shared by the Fine-tune and Reconstruct widgets."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

__all__ = ["SessionModels", "SESSION_MODELS"]


class SessionModels:
    """Model files saved in this session, by display name; ``changed`` fires when one is added."""

    changed = Signal()

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}

    def add(self, name: str, path: str | Path) -> None:
        """Register (or replace) a model file under ``name``."""
        self._paths[name] = Path(path)
        self.changed.emit()

    def items(self) -> list[tuple[str, Path]]:
        """``(name, path)`` pairs in the order they were added."""
        return list(self._paths.items())


#: The session's registry (one per process).
SESSION_MODELS = SessionModels()
