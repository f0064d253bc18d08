"""TIFF input and output with physical pixel sizes (tifffile).

Pixel sizes are in micrometres (µm). They are read from OME-XML
(``PhysicalSizeX/Y/Z`` with their units) or from ImageJ metadata
(``XResolution``/``YResolution`` in pixels per ``unit``, ``spacing`` for Z),
and written as ImageJ metadata that Fiji, napari and tifffile all understand.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ._files import atomic_write

__all__ = ["TiffImage", "TiffReadError", "read_tiff", "write_tiff", "scale_for_axes", "um_per_unit", "output_axes"]

# factor that turns a length in the given unit into micrometres
_UNIT_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "in": 25400.0,
    "inch": 25400.0,
}


class TiffReadError(ValueError):
    """A file that cannot be read as an image; the message names the file."""


@dataclass(frozen=True)
class TiffImage:
    """An image read from a TIFF file.

    Attributes
    ----------
    data
        The pixels, shape as in the file (``(H, W)``, ``(Z, H, W)``, ...).
    axes
        One letter per axis of ``data`` in tifffile's convention (``"YX"``,
        ``"ZYX"``, ``"TYX"``, ``"CYX"``, ``"YXS"`` for RGB, ...).
    pixel_size_um
        ``(y, x)`` pixel size in µm, or ``None`` when the file does not say.
    z_spacing_um
        Plane spacing in µm for a Z stack, or ``None``.
    path
        Where it was read from.
    info
        ImageJ's ``Info`` text (napari-cvdm records there how an output was made), or ``None``.
    """

    data: np.ndarray
    axes: str
    pixel_size_um: tuple[float, float] | None
    z_spacing_um: float | None
    path: Path
    info: str | None = None


def um_per_unit(unit: object, missing: float | None = None) -> float | None:
    """Micrometres per ``unit`` (a name such as ``"nm"`` or a pint unit napari gives), ``missing`` when there is
    no unit, ``None`` for pixels and unknown units. The one unit table of the package (reader, writer, widgets)."""
    if unit is None:
        return missing
    u = str(unit).strip()
    return _UNIT_TO_UM.get(u, _UNIT_TO_UM.get(u.lower()))


def _ome_pixel_size(ome_xml: str) -> tuple[tuple[float, float] | None, float | None]:
    root = ET.fromstring(ome_xml)
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None, None

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        factor = um_per_unit(pixels.get(f"PhysicalSize{axis}Unit"), missing=1.0)  # OME's default unit is µm
        if value is None or factor is None or float(value) <= 0:
            return None
        return float(value) * factor

    x, y, z = size("X"), size("Y"), size("Z")
    if x is None and y is None:
        return None, z
    return (y if y is not None else x, x if x is not None else y), z


def _ome_description(ome_xml: str) -> str | None:
    """The first image's ``Description`` in OME-XML (where napari-cvdm keeps how an output was made)."""
    found = next((el for el in ET.fromstring(ome_xml).iter() if el.tag.endswith("Description")), None)
    return found.text if found is not None and found.text else None


def _resolution_pixel_size(page: tifffile.TiffPage, unit: str | None) -> tuple[float, float] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None

    def per_unit(tag: str) -> float:
        num, den = tags[tag].value
        return num / den if den else 0.0

    xres, yres = per_unit("XResolution"), per_unit("YResolution")
    if xres <= 0 or yres <= 0:
        return None
    if unit is not None:
        factor = um_per_unit(unit)
    else:
        res_unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
        factor = {3: 1e4, 2: 25400.0}.get(int(res_unit))  # centimetre, inch; 1 = no unit
        # a bare 72 or 96 dpi is a screen resolution written by image editors, not a pixel size
        if int(res_unit) == 2 and round(xres) in (72, 96, 300):
            return None
    if factor is None:
        return None
    return factor / yres, factor / xres


def read_tiff(path: str | Path) -> TiffImage:
    """Read the first image series of a TIFF file with its pixel size.

    Parameters
    ----------
    path
        A ``.tif``/``.tiff`` file.

    Raises
    ------
    TiffReadError
        When the file is missing, empty, truncated or not a TIFF.
    """
    path = Path(path)
    if not path.exists():
        raise TiffReadError(f"{path}: file not found")
    if path.is_dir():
        raise TiffReadError(f"{path}: is a folder, not a TIFF file")
    if path.stat().st_size == 0:
        raise TiffReadError(f"{path}: the file is empty (0 bytes)")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise TiffReadError(f"{path}: the TIFF file contains no image")
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            pixel_size: tuple[float, float] | None = None
            z_spacing: float | None = None
            info = (tif.imagej_metadata or {}).get("Info")
            if tif.is_ome and tif.ome_metadata:
                pixel_size, z_spacing = _ome_pixel_size(tif.ome_metadata)
                info = info or _ome_description(tif.ome_metadata)
            if pixel_size is None:
                ij = tif.imagej_metadata or {}
                pixel_size = _resolution_pixel_size(series.pages[0] or tif.pages[0], ij.get("unit"))
                factor = um_per_unit(ij.get("unit"))  # a spacing in pixels, or of no unit, is no length
                if z_spacing is None and "spacing" in ij and factor is not None:
                    z_spacing = float(ij["spacing"]) * factor
    except TiffReadError:
        raise
    except Exception as err:  # tifffile raises many types for bad files
        raise TiffReadError(f"{path}: cannot be read as a TIFF image ({type(err).__name__}: {err})") from None
    if data.size == 0:
        raise TiffReadError(f"{path}: the image has no pixels (shape {data.shape})")
    z_spacing = z_spacing if "Z" in axes else None  # ImageJ keeps a spacing for files whose planes are channels
    return TiffImage(data, axes, pixel_size, z_spacing, path, None if info is None else str(info))


def scale_for_axes(image: TiffImage, axes: str | None = None) -> tuple[float, ...]:
    """Per-axis scale: µm for Y, X and Z when known, 1 otherwise.

    Parameters
    ----------
    image
        The image read.
    axes
        The axes to give a scale for (default ``image.axes``; an RGB ``S`` axis is
        left out by the caller).
    """
    scale = []
    for ax in image.axes if axes is None else axes:
        if ax == "Y" and image.pixel_size_um:
            scale.append(image.pixel_size_um[0])
        elif ax == "X" and image.pixel_size_um:
            scale.append(image.pixel_size_um[1])
        elif ax == "Z" and image.z_spacing_um:
            scale.append(image.z_spacing_um)
        else:
            scale.append(1.0)
    return tuple(scale)


def checked_axes(shape: tuple[int, ...], axes: str | None) -> str:
    """The axes an image of ``shape`` is written with: ``axes``, or ``YX``, ``ZYX``, ``TZYX`` by the dimensions
    (``ValueError`` when they do not fit)."""
    if axes is None:
        axes = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(len(shape))
        if axes is None:
            raise ValueError(f"cannot write an array of shape {shape} as an image")
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not match an array of shape {shape}")
    return axes


def pixel_yx(pixel_size_um: float | tuple[float, float]) -> tuple[float, float]:
    """``(y, x)`` pixel size in µm from one value or a pair."""
    py, px = (pixel_size_um, pixel_size_um) if np.isscalar(pixel_size_um) else pixel_size_um
    return float(py), float(px)


def write_tiff(
    path: str | Path,
    data: np.ndarray,
    pixel_size_um: float | tuple[float, float] | None = None,
    axes: str | None = None,
    z_spacing_um: float | None = None,
    info: str | None = None,
) -> Path:
    """Write an image as an ImageJ-compatible TIFF with its pixel size.

    Parameters
    ----------
    path
        Output file (parent folders are created).
    data
        ``(H, W)``, ``(Z|T|C, H, W)`` or ``(T, Z, H, W)``; float64 is stored as float32.
    pixel_size_um
        Pixel size in µm, one value or ``(y, x)``.
    axes
        ImageJ axes (e.g. ``"YX"``, ``"ZYX"``, ``"TYX"``, ``"CYX"``); guessed from
        ``data.ndim`` when ``None`` (3-D → ``"ZYX"``).
    z_spacing_um
        Z spacing in µm for a Z stack.
    info
        Text kept as ImageJ's ``Info`` property (Fiji: Image > Show Info; :attr:`TiffImage.info`), e.g. how the
        image was made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    axes = checked_axes(arr.shape, axes)
    metadata: dict = {"axes": axes}
    kwargs: dict = {}
    if pixel_size_um is not None:
        py, px = pixel_yx(pixel_size_um)
        kwargs["resolution"] = (1.0 / float(px), 1.0 / float(py))
        metadata["unit"] = "um"
    if z_spacing_um is not None:
        metadata["spacing"] = float(z_spacing_um)
    if info is not None:
        metadata["Info"] = info
    imagej = arr.dtype in (np.uint8, np.uint16, np.float32) and set(axes) <= set("TZCYXS")
    atomic_write(
        path,
        lambda tmp: tifffile.imwrite(
            tmp, arr, imagej=imagej, metadata=metadata if imagej else {"axes": axes}, **kwargs
        ),
    )
    return path


#: The order ImageJ (and so Fiji) keeps the axes of a hyperstack in.
IMAGEJ_ORDER = "TZCYX"


def output_axes(input_axes: str | None, ndim: int) -> str | None:
    """The axes of an output with ``ndim`` dimensions computed plane by plane from an input with ``input_axes``
    (tifffile's letters): the input's, less the axis before ``Y`` when the output has one dimension fewer (a qpi
    pair's planes); letters that name no ImageJ axis (``Q``, ``I``, ``S``: the file did not say) become the first
    of Z, T, C not used yet. ``None`` when there is nothing to go by or the result is not in ImageJ's order
    (the writer then guesses from the dimensions).

    Examples: ``"TYX"`` → ``"TYX"`` (a time-lapse stays one), ``"CYX"`` → ``"CYX"``, a pair ``"SYX"`` with a 2-D
    phase → ``"YX"``, the same pair's residual → ``"ZYX"``.
    """
    if not input_axes or len(input_axes) < ndim or not input_axes.endswith("YX"):
        return None
    axes = input_axes if len(input_axes) == ndim else input_axes[:-3] + input_axes[-2:]
    if len(axes) != ndim:
        return None
    named = [a if a in IMAGEJ_ORDER else "" for a in axes]
    for i, a in enumerate(named):
        if not a:
            named[i] = next(c for c in "ZTC" if c not in named)
    out = "".join(named)
    order = [IMAGEJ_ORDER.index(a) for a in out]
    return out if order == sorted(order) and len(set(out)) == len(out) else None


def write_ome_tiff(
    path: str | Path,
    data: np.ndarray,
    pixel_size_um: float | tuple[float, float] | None = None,
    axes: str | None = None,
    z_spacing_um: float | None = None,
    info: str | None = None,
) -> Path:
    """Write an image as OME-TIFF (OME-XML with the axes, ``PhysicalSizeX/Y/Z`` in µm and ``info`` as the image's
    description), atomically; parameters as :func:`write_tiff`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data, np.float32)
    metadata: dict = {"axes": checked_axes(arr.shape, axes)}
    if pixel_size_um is not None:
        py, px = pixel_yx(pixel_size_um)
        metadata |= {"PhysicalSizeX": float(px), "PhysicalSizeXUnit": "µm"}
        metadata |= {"PhysicalSizeY": float(py), "PhysicalSizeYUnit": "µm"}
    if z_spacing_um is not None:
        metadata |= {"PhysicalSizeZ": float(z_spacing_um), "PhysicalSizeZUnit": "µm"}
    if info is not None:
        metadata["Description"] = info
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, arr, ome=True, metadata=metadata))
    return path
