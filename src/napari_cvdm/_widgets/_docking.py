"""Where a CVDM panel docks: Fine-tune is tall (settings, two plots), so beside a docked Reconstruct panel it goes
into tabs with it instead of under it, where a 1280×800 screen left it about 100 pixels."""

from __future__ import annotations

from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

__all__ = ["mark_as_panel", "tab_beside_panels"]

#: The Qt property that marks the plugin's panels.
PANEL_PROPERTY = "napari_cvdm_panel"


def mark_as_panel(widget: QWidget) -> None:
    """Mark ``widget`` as one of the plugin's panels (:func:`tab_beside_panels` looks for them)."""
    widget.setProperty(PANEL_PROPERTY, True)


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _holds_panel(dock: QDockWidget) -> bool:
    return any(w.property(PANEL_PROPERTY) for w in dock.findChildren(QWidget))


def tab_beside_panels(widget: QWidget) -> bool:
    """Put ``widget``'s dock into tabs with another visible plugin panel docked in the same area of the window and
    show it on top; whether it did (``False``: not docked yet, floating, or alone)."""
    dock, window = _dock_of(widget), widget.window()
    if dock is None or dock.isFloating() or not isinstance(window, QMainWindow):
        return False
    area = window.dockWidgetArea(dock)
    for other in window.findChildren(QDockWidget):
        if other is dock or other.isFloating() or not other.isVisible() or window.dockWidgetArea(other) != area:
            continue
        if _holds_panel(other) and other not in window.tabifiedDockWidgets(dock):
            window.tabifyDockWidget(other, dock)
            dock.show()
            dock.raise_()
            return True
    return False
