"""napari widgets: the only part of the package that imports Qt, napari or magicgui."""

from .finetune import FineTuneWidget
from .reconstruct import ReconstructWidget

__all__ = ["FineTuneWidget", "ReconstructWidget"]
