"""The path bioimage.io packages name for their weights (``import_from="napari_cvdm.bioimageio_model"``): kept here,
among the package's faces, so that packages exported by any version run. The runner itself is
:class:`napari_cvdm.inference.bioimageio_model.CVDMReconstruction`."""

from .inference.bioimageio_model import CVDMReconstruction

__all__ = ["CVDMReconstruction"]
