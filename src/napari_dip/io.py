"""Reading and writing image files for the command line and batch runs.

``read_image(path)`` returns ``(array, metadata)``; ``write_image(path, array,
metadata)`` writes an array, using the metadata of the file it came from to keep
axes and pixel sizes (TIFF) or to pick the integer type (PNG/JPEG). The format
follows the file name's extension: each format is one entry of ``FORMATS``, so a
new format is a reader, a writer and one :func:`register_format` call.

Metadata keys (all optional except ``format``, ``dtype`` and ``shape``):

``format``
    'tiff', 'png', 'jpeg' or 'npy'.
``dtype``, ``shape``
    Of the array as stored in the file.
``axes``
    TIFF axes letters, e.g. 'YX', 'ZYX', 'YXS' (S = RGB samples).
``pixel_size``, ``unit``
    Size of a pixel per axis letter, e.g. ``{'Y': 0.1, 'X': 0.1, 'Z': 0.5}``,
    in ``unit`` (e.g. 'um'); from the TIFF resolution tags and ImageJ spacing.
``channel_axis``
    The axis holding colour channels when the file says so (RGB(A) PNG/JPEG,
    TIFF axes 'S' or 'C'), else None.

Writing PNG or JPEG (integers only): values are rounded and clipped to

1. the input file's type when it was uint8 or uint16 (``metadata['dtype']``);
2. otherwise, by the array's own range: within [0, 1] (floats) scaled to 0-255
   uint8; within [0, 255] uint8; within [0, 65535] uint16; any other range is
   stretched linearly from its minimum and maximum to the full uint16 range.

JPEG, and PNG with several channels, hold 8 bits only: 16-bit values are scaled
to 8 bits (divided by 257). For exact values, write TIFF (floats are written as
float32) or ``.npy``.

Every write goes to a temporary file in the same folder, then ``os.replace``
gives it its name: a file under the final name is always complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DIPInputError


@dataclass(frozen=True)
class ImageFormat:
    """A file format: ``read(path) -> (array, metadata)``, ``write(path, array, metadata)``."""

    name: str
    read: Callable
    write: Callable


FORMATS: dict[str, ImageFormat] = {}  # lower-case extension ('.tif', '.ome.tif' …) -> format


def register_format(name: str, extensions, read: Callable, write: Callable) -> None:
    """Make ``read_image``/``write_image`` handle files whose names end in one of ``extensions``."""
    image_format = ImageFormat(name, read, write)
    for extension in extensions:
        FORMATS[extension.lower()] = image_format


def format_for(path) -> ImageFormat:
    """The format of ``path`` from its extension; the longest match wins ('.ome.tif' before '.tif')."""
    name = Path(path).name.lower()
    for extension in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(extension):
            return FORMATS[extension]
    known = ", ".join(sorted(FORMATS))
    raise DIPInputError(f"{path}: unknown file type {Path(path).suffix or '(no extension)'!r}; "
                        f"use one of {known}")


def read_image(path):
    """Read an image file.

    Parameters
    ----------
    path : str or Path
        A file whose extension names its format (see ``FORMATS``).

    Returns
    -------
    array : numpy.ndarray
        The pixels as stored (dtype unchanged).
    metadata : dict
        See the module docstring.

    Raises
    ------
    DIPInputError
        The file is missing, its extension unknown, or it cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "cells.tif")
    >>> write_image(path, np.zeros((2, 16, 16), np.uint16))
    >>> array, metadata = read_image(path)
    >>> array.shape, metadata["format"], metadata["dtype"]
    ((2, 16, 16), 'tiff', 'uint16')
    """
    image_format = format_for(path)
    if not os.path.exists(path):
        raise DIPInputError(f"{path}: no such file")
    try:
        array, metadata = image_format.read(path)
    except Exception as exc:  # each library raises its own types; the user needs the file name and why
        raise DIPInputError(f"{path}: cannot read it as {image_format.name}: {exc}") from None
    metadata = {"format": image_format.name, "dtype": str(array.dtype), "shape": list(array.shape), **metadata}
    return array, metadata


def enlarged_metadata(metadata: dict, enlarged: dict) -> dict:
    """``metadata`` for a result enlarged ``enlarged[axis]`` times along some axes ({'Y': 4, 'X': 4}, or
    {'Z': 3} for axial resolution): its pixels are that many times smaller there."""
    metadata = dict(metadata)
    if metadata.get("pixel_size"):
        metadata["pixel_size"] = {axis: size / enlarged.get(axis, 1) for axis, size in metadata["pixel_size"].items()}
    return metadata


def write_image(path, array, metadata=None) -> None:
    """Write ``array`` to ``path`` in the format its extension names.

    Parameters
    ----------
    path : str or Path
        Target file; missing parent folders are created.
    array : array_like
        The image, e.g. a restoration result (float32, input units).
    metadata : dict, optional
        Metadata of the file the data came from (from :func:`read_image`):
        TIFF keeps its axes, pixel size and unit; PNG/JPEG use its dtype to
        choose the integer type (see the module docstring).

    Raises
    ------
    DIPInputError
        The extension is unknown, or the format cannot hold this array.

    Examples
    --------
    A float result written as PNG is rounded to the integer type of the file it came from:

    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "restored.png")
    >>> write_image(path, np.full((8, 8), 200.4, np.float32), {"dtype": "uint8"})
    >>> array, metadata = read_image(path)
    >>> array.dtype, int(array[0, 0])
    (dtype('uint8'), 200)
    """
    image_format = format_for(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        image_format.write(partial, np.asarray(array), dict(metadata or {}))


def write_json(path, record: dict) -> None:
    """Write a run record as indented JSON, atomically; numpy values become plain numbers and lists."""
    def plain(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        return str(value)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(record, file, indent=2, default=plain)
            file.write("\n")


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield partial
        if partial.is_dir() and path.is_dir():  # a zarr store replaces an older one: a folder cannot be
            shutil.rmtree(path)                  # renamed over a non-empty folder
        os.replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial)
        elif partial.exists():
            partial.unlink()


# ---------------------------------------------------------------------------------------------
# TIFF

_TIFF_UNITS = {2: "inch", 3: "cm", 4: "mm", 5: "um"}  # ResolutionUnit tag values


def _read_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        array = tif.series[0].asarray()
        metadata = _tiff_metadata(tif)
    return array, metadata


def _tiff_metadata(tif) -> dict:
    """Axes, pixel size, unit and channel axis of an open ``tifffile.TiffFile`` (pixels are not read)."""
    series = tif.series[0]
    ndim = len(series.shape)
    axes = series.axes
    page = tif.pages[0]  # a full page with tags (later pages may be light frames)
    imagej = tif.imagej_metadata or {}
    shaped = (tif.shaped_metadata or ({},))[0] or {}
    pixel_size = {}
    if "XResolution" in page.tags and "YResolution" in page.tags:
        x_res, y_res = page.resolution
        if x_res and y_res:
            pixel_size = {"Y": 1.0 / y_res, "X": 1.0 / x_res}
    spacing = imagej.get("spacing", shaped.get("spacing"))
    if spacing:
        pixel_size["Z"] = float(spacing)
    unit = imagej.get("unit") or shaped.get("unit") or _TIFF_UNITS.get(int(page.resolutionunit))
    if tif.is_ome:
        pixel_size, unit = _ome_pixel_size(tif, pixel_size, unit)
    if len(axes) != ndim:  # series with squeezed axes: the letters no longer fit
        axes = None
    channel_axis = next((i for i, a in enumerate(axes or "") if a in "SC"), None)
    return {"axes": axes, "pixel_size": pixel_size, "unit": unit if pixel_size else None,
            "channel_axis": channel_axis}


def _write_tiff(path, array, metadata):
    import tifffile

    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype.kind in "fc":
        array = array.real.astype(np.float32)  # results are float32 in input units: keep them exact
    axes = metadata.get("axes")
    description = {"axes": axes} if axes and len(axes) == array.ndim else {}
    pixel_size = metadata.get("pixel_size") or {}
    unit = metadata.get("unit")
    if unit:
        description["unit"] = unit
    if "Z" in pixel_size:
        description["spacing"] = pixel_size["Z"]
    options = {}
    if "X" in pixel_size and "Y" in pixel_size:
        options["resolution"] = (1.0 / pixel_size["X"], 1.0 / pixel_size["Y"])
        standard = {v: k for k, v in _TIFF_UNITS.items()}
        options["resolutionunit"] = standard.get(unit, 1)  # 1 = none: the unit is in the description
    channel_axis = metadata.get("channel_axis")
    rgb = (channel_axis is not None and channel_axis % array.ndim == array.ndim - 1
           and array.shape[-1] in (3, 4))
    tifffile.imwrite(path, array, photometric="rgb" if rgb else "minisblack", metadata=description, **options)


# ---------------------------------------------------------------------------------------------
# PNG and JPEG


def _read_picture(path):
    import imageio.v3 as iio

    array = iio.imread(path)
    # a picture with a third axis has it for colours (RGB, RGBA, grey + alpha)
    channel_axis = -1 if array.ndim == 3 and array.shape[-1] in (2, 3, 4) else None
    return array, {"channel_axis": channel_axis}


def _write_picture(path, array, metadata, extension, eight_bit_only):
    import imageio.v3 as iio

    if extension == ".jpg" and array.ndim == 3 and array.shape[-1] in (2, 4):
        raise DIPInputError(f"{path}: JPEG cannot store an alpha channel; write PNG or TIFF instead")
    several_channels = array.ndim == 3 and array.shape[-1] in (2, 3, 4)
    pixels = to_integer_image(array, metadata.get("dtype"), eight_bit_only or several_channels)
    options = {"quality": 95} if extension == ".jpg" else {}
    iio.imwrite(path, pixels, extension=extension, **options)


def to_integer_image(array, source_dtype=None, eight_bit_only=False) -> np.ndarray:
    """Round and clip ``array`` to uint8 or uint16 by the rule in the module docstring."""
    values = np.asarray(array, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if source_dtype in ("uint8", "uint16"):
        dtype = np.dtype(source_dtype)
    elif low >= 0 and high <= 1 and np.asarray(array).dtype.kind == "f":
        values, dtype = values * 255, np.dtype(np.uint8)
    elif low >= 0 and high <= 255:
        dtype = np.dtype(np.uint8)
    elif low >= 0 and high <= 65535:
        dtype = np.dtype(np.uint16)
    else:  # no integer type holds these values: stretch them over the full 16-bit range
        values, dtype = (values - low) / ((high - low) or 1.0) * 65535, np.dtype(np.uint16)
    if dtype == np.uint16 and eight_bit_only:
        values, dtype = values / 257, np.dtype(np.uint8)
    return np.clip(np.rint(values), 0, np.iinfo(dtype).max).astype(dtype)


# ---------------------------------------------------------------------------------------------
# NumPy


def _read_npy(path):
    return np.load(path, allow_pickle=False), {}


def _write_npy(path, array, metadata):
    with open(path, "wb") as file:  # np.save on a name would append '.npy' to the temporary name
        np.save(file, array, allow_pickle=False)


register_format("tiff", (".tif", ".tiff"), _read_tiff, _write_tiff)
register_format("png", (".png",), _read_picture,
                lambda path, array, metadata: _write_picture(path, array, metadata, ".png", False))
register_format("jpeg", (".jpg", ".jpeg"), _read_picture,
                lambda path, array, metadata: _write_picture(path, array, metadata, ".jpg", True))
register_format("npy", (".npy",), _read_npy, _write_npy)


# ---------------------------------------------------------------------------------------------
# OME-TIFF: the axes and physical pixel sizes of the OME-XML

_OME_UNITS = {"um": "µm", "micron": "µm", "micrometer": "µm", "µm": "µm", "nm": "nm", "mm": "mm",
              "cm": "cm", "m": "m"}


def _ome_pixel_size(tif, pixel_size: dict, unit):
    """Pixel sizes and unit from the OME-XML of an open TiffFile (unchanged where it has none)."""
    import tifffile

    image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    sizes = {axis: float(pixels[f"PhysicalSize{axis}"]) for axis in "ZYX" if f"PhysicalSize{axis}" in pixels}
    if not sizes:
        return pixel_size, unit
    ome_unit = pixels.get("PhysicalSizeXUnit", "µm")  # the OME default
    return {**pixel_size, **sizes}, "um" if ome_unit == "µm" else ome_unit


def _write_ome_tiff(path, array, metadata):
    import tifffile

    if array.dtype.kind in "fc":
        array = array.real.astype(np.float32)
    axes = metadata.get("axes")
    description = {"axes": axes} if axes and len(axes) == array.ndim else {}
    unit = _OME_UNITS.get(metadata.get("unit") or "um")
    for axis, size in (metadata.get("pixel_size") or {}).items():
        description[f"PhysicalSize{axis}"] = size
        if unit:
            description[f"PhysicalSize{axis}Unit"] = unit
    channel_axis = metadata.get("channel_axis")
    rgb = (channel_axis is not None and channel_axis % array.ndim == array.ndim - 1 and array.shape[-1] in (3, 4)
           and (not axes or axes.endswith("S")))
    tifffile.imwrite(path, array, ome=True, photometric="rgb" if rgb else "minisblack", metadata=description)


register_format("ome-tiff", (".ome.tif", ".ome.tiff"), _read_tiff, _write_ome_tiff)


# ---------------------------------------------------------------------------------------------
# GeoTIFF (optional extra [geo], through rasterio): a .tif with GeoTIFF tags is read with its CRS,
# transform and nodata value; nodata pixels become NaN, which a restoration treats as missing.
# Metadata keys: ``crs`` (WKT), ``transform`` (the 6 affine coefficients a, b, c, d, e, f),
# ``nodata``. Writing with a ``crs`` or ``transform`` in the metadata writes a GeoTIFF, its
# transform scaled when the array is larger than the source (super-resolution).

_GEOTIFF_TAGS = (33550, 33922, 34264, 34735)  # ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory


def _is_geotiff(path) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return any(code in tif.pages[0].tags for code in _GEOTIFF_TAGS)


def _read_tiff_or_geotiff(path):
    if _is_geotiff(path):
        try:
            import rasterio  # noqa: F401
        except ImportError:
            warnings.warn(f"{path} is a GeoTIFF: install napari-dip[geo] (rasterio) to keep its georeferencing",
                          stacklevel=3)
        else:
            return _read_geotiff(path)
    return _read_tiff(path)


def _write_tiff_or_geotiff(path, array, metadata):
    if metadata.get("crs") or metadata.get("transform"):
        return _write_geotiff(path, array, metadata)
    return _write_tiff(path, array, metadata)


# GeoTIFF-aware replacement of the plain TIFF entry
register_format("tiff", (".tif", ".tiff"), _read_tiff_or_geotiff, _write_tiff_or_geotiff)


def _read_geotiff(path):
    import rasterio

    with rasterio.open(path) as source:
        bands = source.read()  # (bands, rows, cols)
        nodata = source.nodata
        crs = source.crs
        transform = source.transform
    metadata = {"format": "geotiff", "dtype": str(bands.dtype), "crs": crs.to_wkt() if crs else None,
                "transform": [transform.a, transform.b, transform.c, transform.d, transform.e, transform.f],
                "nodata": None if nodata is None else float(nodata),
                "pixel_size": {"Y": abs(transform.e), "X": abs(transform.a)},
                "unit": crs.linear_units if crs is not None and crs.is_projected else None}
    array = bands[0] if bands.shape[0] == 1 else bands
    metadata.update(axes="YX" if array.ndim == 2 else "CYX", channel_axis=None if array.ndim == 2 else 0)
    if nodata is not None:
        missing = np.isnan(array) if np.isnan(nodata) else array == nodata
        if missing.any():
            array = array.astype(np.float32)
            array[missing] = np.nan
    return array, metadata


def _write_geotiff(path, array, metadata):
    try:
        import rasterio
        from rasterio.transform import Affine
    except ImportError:
        raise DIPInputError(f"{path}: writing a GeoTIFF needs rasterio: pip install 'napari-dip[geo]'") from None
    channel_axis = metadata.get("channel_axis")
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, 0 if channel_axis is None else channel_axis, 0)
    if bands.ndim != 3:
        raise DIPInputError(f"{path}: a GeoTIFF holds (bands, rows, cols); got an array of shape {array.shape}")
    if bands.dtype.kind in "fcb":
        bands = bands.real.astype(np.float32)
    transform = Affine(*metadata.get("transform") or Affine.identity()[:6])
    rows, cols = (metadata.get("shape") or bands.shape)[-2:]
    if (rows, cols) != bands.shape[1:]:  # a super-resolved result: pixels are smaller by the same factor
        transform = transform @ Affine.scale(cols / bands.shape[2], rows / bands.shape[1])
    nodata = metadata.get("nodata")
    if nodata is not None and bands.dtype.kind in "iu" and not np.can_cast(np.min_scalar_type(nodata), bands.dtype):
        nodata = None
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2],
                       count=bands.shape[0], dtype=bands.dtype, crs=metadata.get("crs"), transform=transform,
                       nodata=nodata) as target:
        target.write(bands)


# ---------------------------------------------------------------------------------------------
# zarr: arrays larger than memory. Reading gives a lazy ``zarr.Array``: slicing reads only what is
# asked for, ``np.asarray`` reads it all. A plain array keeps the metadata in its ``napari_dip``
# attribute; an OME-NGFF (OME-Zarr) group gives its first (full-resolution) image, axes and scale.


def _read_zarr(path):
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node, dict(node.attrs.get("napari_dip", {}))
    multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise ValueError("a zarr group that is not OME-NGFF: give the path of an array inside it")
    dataset = multiscales[0]["datasets"][0]
    array = node[dataset["path"]]
    axes_info = multiscales[0].get("axes") or []
    names = [a["name"] if isinstance(a, dict) else a for a in axes_info]
    metadata = {}
    if len(names) == array.ndim:
        axes = "".join(name[0].upper() for name in names)
        scale = next((t["scale"] for t in dataset.get("coordinateTransformations", []) if t["type"] == "scale"), None)
        units = {a.get("unit") for a in axes_info if isinstance(a, dict) and a.get("type") == "space"}
        metadata = {"axes": axes, "channel_axis": axes.find("C") if "C" in axes else None,
                    "pixel_size": {a: float(s) for a, s in zip(axes, scale or []) if a in "ZYX"},
                    "unit": {"micrometer": "um"}.get(*units, *units) if len(units) == 1 else None}
    return array, metadata


def create_zarr(path, shape, metadata=None, dtype=np.float32, chunks=None):
    """A new zero-filled zarr array at ``path`` (replaced if it exists) with ``metadata`` in its attributes.

    Chunks default to one plane and at most 512 × 512 pixels in Y/X. Use it with
    :func:`atomic_output` so that an unfinished store never has the final name.
    """
    import zarr

    if chunks is None:
        chunks = tuple(1 for _ in shape[:-2]) + tuple(min(512, s) for s in shape[-2:])
        channel_axis = (metadata or {}).get("channel_axis")
        if channel_axis is not None:
            chunks = tuple(s if i == channel_axis % len(shape) else c for i, (s, c) in enumerate(zip(shape, chunks)))
    array = zarr.open_array(str(path), mode="w", shape=tuple(shape), dtype=dtype, chunks=chunks, fill_value=0)
    keep = ("axes", "pixel_size", "unit", "channel_axis", "crs", "transform", "nodata")
    array.attrs["napari_dip"] = {k: v for k, v in (metadata or {}).items() if k in keep}
    return array


def _write_zarr(path, array, metadata):
    create_zarr(path, array.shape, metadata, np.float32 if array.dtype.kind in "fc" else array.dtype)[...] = array


register_format("zarr", (".zarr",), _read_zarr, _write_zarr)


def read_image_lazy(path):
    """Like :func:`read_image`, but TIFF and zarr pixels stay on disk until sliced.

    Returns ``(array, metadata)``. For TIFF, OME-TIFF and zarr files ``array``
    is lazy: it has ``shape``, ``dtype`` and ``ndim``, indexing it reads only that
    part, ``np.asarray`` reads it all. Other formats (and GeoTIFF, whose nodata
    pixels are replaced on reading) give a NumPy array, as TIFF does without the
    zarr package (lazy TIFF reading goes through tifffile's zarr store).
    """
    image_format = format_for(path)
    if image_format.name not in ("tiff", "ome-tiff") or not os.path.exists(path) or not _has_zarr():
        return read_image(path)
    try:
        if _is_geotiff(path):
            return read_image(path)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            metadata = _tiff_metadata(tif)
            shape, dtype = tif.series[0].shape, tif.series[0].dtype
    except DIPInputError:
        raise
    except Exception as exc:
        raise DIPInputError(f"{path}: cannot read it as {image_format.name}: {exc}") from None
    return _LazyTiff(path, shape, dtype), {"format": image_format.name, "dtype": str(dtype),
                                          "shape": list(shape), **metadata}


def _has_zarr() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


class _LazyTiff:
    """A TIFF series that reads only the part it is indexed with (the file is opened per read)."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = str(path), tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tif:
            return np.asarray(zarr.open(tif.series[0].aszarr(level=0), mode="r")[index])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[...], dtype=dtype)
