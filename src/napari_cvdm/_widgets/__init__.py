"""napari widgets: the only part of the package that imports Qt, napari or magicgui."""

from .reconstruct import ReconstructWidget

__all__ = ["ReconstructWidget"]
