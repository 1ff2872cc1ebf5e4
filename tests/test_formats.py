"""OME-TIFF, GeoTIFF and zarr: metadata round trips and lazy reading."""

import sys

import numpy as np
import pytest
import tifffile
from conftest import DEVICE

from napari_dip.io import create_zarr, read_image, read_image_lazy, write_image

TINY = dict(network_down=(8, 16), network_up=(8, 16), network_skip=(2, 2), input_channels=4, device=DEVICE)


def test_ome_tiff_round_trip_keeps_axes_and_physical_pixel_sizes(tmp_path):
    stack = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    metadata = {"axes": "ZYX", "pixel_size": {"Z": 1.5, "Y": 0.25, "X": 0.2}, "unit": "um"}
    write_image(tmp_path / "a.ome.tif", stack, metadata)
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tif:
        assert tif.is_ome
    image, read = read_image(tmp_path / "a.ome.tif")
    np.testing.assert_array_equal(image, stack)
    assert read["format"] == "ome-tiff" and read["axes"] == "ZYX" and read["unit"] == "um"
    assert read["pixel_size"] == pytest.approx({"Z": 1.5, "Y": 0.25, "X": 0.2})


def test_ome_pixel_sizes_are_read_from_a_plain_tif_name_too(tmp_path):
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((2, 8, 9), np.uint16), ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    _, metadata = read_image(tmp_path / "b.tif")
    assert metadata["axes"] == "CYX" and metadata["channel_axis"] == 0
    assert metadata["pixel_size"] == pytest.approx({"Y": 0.1, "X": 0.1})


def test_tiff_is_read_lazily_plane_by_plane(tmp_path):
    pytest.importorskip("zarr")
    stack = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "TYX"}, resolution=(4.0, 4.0))
    lazy, metadata = read_image_lazy(tmp_path / "s.tif")
    assert not isinstance(lazy, np.ndarray) and lazy.shape == (4, 16, 16) and lazy.dtype == np.uint16
    np.testing.assert_array_equal(lazy[2], stack[2])
    np.testing.assert_array_equal(np.asarray(lazy), stack)
    _, eager = read_image(tmp_path / "s.tif")
    assert metadata == eager


def test_tiff_without_zarr_is_read_whole(tmp_path, monkeypatch):
    stack = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if zarr were not installed: importing it fails
    array, metadata = read_image_lazy(tmp_path / "s.tif")
    assert isinstance(array, np.ndarray) and metadata["shape"] == [2, 8, 8]
    np.testing.assert_array_equal(array, stack)


def test_zarr_round_trip_keeps_metadata_and_reads_lazily(tmp_path):
    zarr = pytest.importorskip("zarr")
    stack = np.random.default_rng(1).random((2, 40, 50)).astype(np.float32)
    metadata = {"axes": "TYX", "pixel_size": {"Y": 0.5, "X": 0.5}, "unit": "um", "channel_axis": None}
    write_image(tmp_path / "a.zarr", stack, metadata)
    array, read = read_image(tmp_path / "a.zarr")
    assert isinstance(array, zarr.Array)  # nothing read yet
    np.testing.assert_array_equal(array[1], stack[1])
    assert read["format"] == "zarr" and read["axes"] == "TYX" and read["pixel_size"] == {"Y": 0.5, "X": 0.5}
    write_image(tmp_path / "a.zarr", stack * 2, metadata)  # replaces the old store
    np.testing.assert_array_equal(read_image(tmp_path / "a.zarr")[0][...], stack * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["a.zarr"]


def test_a_failed_zarr_write_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    import napari_dip.io as io

    def broken(path, array, metadata):
        create_zarr(path, array.shape, metadata)
        raise OSError("disk full")

    monkeypatch.setitem(io.FORMATS, ".zarr", io.ImageFormat("zarr", io._read_zarr, broken))
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "x.zarr", np.zeros((8, 8)))
    assert list(tmp_path.iterdir()) == []


def test_ome_ngff_group_gives_its_full_resolution_image(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "cells.ome.zarr"), mode="w")
    group.create_array("0", shape=(2, 32, 32), dtype="u2")[...] = 7
    group.create_array("1", shape=(2, 16, 16), dtype="u2")
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.3, 0.3]}]},
                     {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.6, 0.6]}]}]}]
    array, metadata = read_image(tmp_path / "cells.ome.zarr")
    assert array.shape == (2, 32, 32) and int(array[0, 0, 0]) == 7
    assert metadata["axes"] == "CYX" and metadata["channel_axis"] == 0 and metadata["unit"] == "um"
    assert metadata["pixel_size"] == {"Y": 0.3, "X": 0.3}


@pytest.fixture
def geotiff(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    bands = (np.random.default_rng(0).random((2, 24, 32)) * 1000 + 1).astype(np.uint16)
    bands[:, :4, :5] = 0  # outside the scene: nodata
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=24, width=32, count=2, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000, 4100000, 10, 10), nodata=0) as target:
        target.write(bands)
    return path, bands


def test_geotiff_round_trip_keeps_crs_transform_and_nodata(geotiff, tmp_path):
    import rasterio

    path, bands = geotiff
    image, metadata = read_image(path)
    assert metadata["format"] == "geotiff" and metadata["dtype"] == "uint16"
    assert metadata["channel_axis"] == 0 and metadata["nodata"] == 0
    assert np.isnan(image).sum() == 2 * 4 * 5  # nodata pixels are missing pixels
    np.testing.assert_array_equal(image[:, 10:, 10:], bands[:, 10:, 10:])

    write_image(tmp_path / "same.tif", np.nan_to_num(image), metadata)
    with rasterio.open(tmp_path / "same.tif") as written, rasterio.open(path) as source:
        assert written.crs == source.crs and written.transform == source.transform
        assert written.nodata == 0 and written.count == 2

    enlarged = np.nan_to_num(image).repeat(2, axis=1).repeat(2, axis=2)  # as super-resolution ×2 would
    write_image(tmp_path / "x2.tif", enlarged, metadata)
    with rasterio.open(tmp_path / "x2.tif") as written:
        assert written.crs.to_epsg() == 32633 and (written.height, written.width) == (48, 64)
        assert written.transform.a == 5 and written.transform.e == -5
        assert (written.transform.c, written.transform.f) == (500000, 4100000)


def test_geotiff_nodata_becomes_the_mask_of_a_restoration(geotiff):
    from napari_dip import restore

    image, metadata = read_image(geotiff[0])
    result = restore(image, "denoise", channel_axis=metadata["channel_axis"], iterations=2, **TINY)
    assert result.record.parameters["missing_pixels"] == 2 * 4 * 5
    assert np.isfinite(result.image).all()
