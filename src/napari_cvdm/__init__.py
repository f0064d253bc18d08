"""napari-cvdm: Conditional Variational Diffusion Models for microscopy.

The package imports no Qt, napari or magicgui: everything outside
``napari_cvdm._widgets`` is usable from scripts, the command line and servers.
"""

from ._version import __version__

__all__ = ["__version__", "load_model", "Prediction", "CVDMModel", "ModelFileError"]


def __getattr__(name: str):
    """The public API, imported when first used: opening a TIFF in napari (the reader) never loads PyTorch."""
    if name in ("load_model", "Prediction", "CVDMModel", "ModelFileError"):
        from .inference import models

        return getattr(models, name)
    raise AttributeError(f"module 'napari_cvdm' has no attribute {name!r}")
