"""The installed package's version (a source tree without metadata reads ``0.0.0+unknown``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-cvdm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
