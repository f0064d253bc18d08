"""napari-cvdm: Conditional Variational Diffusion Models for microscopy.

The package imports no Qt, napari or magicgui: everything outside
``napari_cvdm._widgets`` is usable from scripts, the command line and servers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-cvdm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .models import CVDMModel, ModelFileError, Prediction, load_model  # noqa: E402

__all__ = ["__version__", "load_model", "Prediction", "CVDMModel", "ModelFileError"]
