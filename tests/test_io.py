"""Image files: round trips per format, metadata, the PNG/JPEG integer rule, atomic writes, errors."""

import numpy as np
import pytest
import tifffile

from napari_dip import DIPInputError
from napari_dip.io import read_image, to_integer_image, write_image


def _ramp(shape, high):
    return np.linspace(0, high, int(np.prod(shape))).reshape(shape)


def test_uint8_png_round_trip(tmp_path):
    image = _ramp((12, 20), 255).astype(np.uint8)
    write_image(tmp_path / "a.png", image)
    back, meta = read_image(tmp_path / "a.png")
    assert back.dtype == np.uint8 and meta["format"] == "png" and meta["channel_axis"] is None
    np.testing.assert_array_equal(back, image)


def test_rgb_png_round_trip_says_where_the_channels_are(tmp_path):
    image = _ramp((12, 20, 3), 255).astype(np.uint8)
    write_image(tmp_path / "rgb.png", image)
    back, meta = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(back, image)
    assert meta["channel_axis"] == -1 and meta["shape"] == [12, 20, 3]


def test_uint16_tiff_round_trip_keeps_axes_and_pixel_size(tmp_path):
    image = _ramp((3, 12, 20), 60000).astype(np.uint16)
    meta = {"axes": "ZYX", "pixel_size": {"Z": 0.5, "Y": 0.1, "X": 0.2}, "unit": "um"}
    write_image(tmp_path / "stack.tif", image, meta)
    back, read_meta = read_image(tmp_path / "stack.tif")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, image)
    assert read_meta["axes"] == "ZYX" and read_meta["unit"] == "um"
    assert read_meta["pixel_size"] == pytest.approx(meta["pixel_size"])


def test_float_tiff_is_written_as_float32_exactly(tmp_path):
    image = np.random.default_rng(0).normal(100, 30, (10, 14))  # float64, negative values possible
    write_image(tmp_path / "f.tiff", image)
    back, meta = read_image(tmp_path / "f.tiff")
    assert back.dtype == np.float32 and meta["format"] == "tiff"
    np.testing.assert_array_equal(back, image.astype(np.float32))


def test_imagej_tiff_gives_z_spacing_and_channel_axis(tmp_path):
    image = np.zeros((4, 2, 10, 12), np.float32)
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZCYX", "unit": "um", "spacing": 0.3})
    _, meta = read_image(tmp_path / "ij.tif")
    assert meta["axes"] == "ZCYX" and meta["channel_axis"] == 1 and meta["unit"] == "um"
    assert meta["pixel_size"] == pytest.approx({"Y": 0.1, "X": 0.1, "Z": 0.3})


def test_rgb_tiff_round_trip(tmp_path):
    image = _ramp((10, 12, 3), 1).astype(np.float32)
    write_image(tmp_path / "rgb.tif", image, {"channel_axis": -1})
    back, meta = read_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(back, image)
    assert meta["channel_axis"] == 2


def test_npy_round_trip_keeps_the_name(tmp_path):
    image = _ramp((5, 6), 7).astype(np.int32)
    write_image(tmp_path / "x.npy", image)
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]
    back, meta = read_image(tmp_path / "x.npy")
    assert back.dtype == np.int32 and meta["format"] == "npy"
    np.testing.assert_array_equal(back, image)


def test_jpeg_round_trip_is_close(tmp_path):
    image = np.full((16, 16, 3), 120, np.uint8)
    write_image(tmp_path / "a.jpeg", image)
    back, meta = read_image(tmp_path / "a.jpeg")
    assert back.dtype == np.uint8 and meta["format"] == "jpeg" and meta["channel_axis"] == -1
    assert np.abs(back.astype(int) - 120).max() <= 2


def test_a_result_written_to_png_takes_the_input_type(tmp_path):
    result = np.array([[-3.2, 0.4, 100.5, 255.7]], np.float32).repeat(4, 0)
    write_image(tmp_path / "r.png", result, {"dtype": "uint8"})
    back, _ = read_image(tmp_path / "r.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back[0], [0, 0, 100, 255])  # rounded half to even, clipped
    write_image(tmp_path / "r16.png", result * 100, {"dtype": "uint16"})
    assert read_image(tmp_path / "r16.png")[0].dtype == np.uint16


@pytest.mark.parametrize("values, dtype, expected", [
    ([0.0, 0.5, 1.0], np.float32, ([0, 128, 255], np.uint8)),  # unit-range floats scale to 8 bits
    ([0.0, 7.6, 255.0], np.float32, ([0, 8, 255], np.uint8)),
    ([0, 1000, 65535], np.int32, ([0, 1000, 65535], np.uint16)),
    ([-10.0, 0.0, 10.0], np.float32, ([0, 32768, 65535], np.uint16)),  # no type fits: stretched
])
def test_integer_rule_by_range(values, dtype, expected):
    out = to_integer_image(np.array(values, dtype))
    assert out.dtype == expected[1]
    np.testing.assert_array_equal(out, expected[0])


def test_integer_rule_eight_bit_only_and_nan():
    out = to_integer_image(np.array([0, 65535, np.nan]), "uint16", eight_bit_only=True)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 255, 0])


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "keep.jpg"
    target.write_bytes(b"old")
    with pytest.raises(DIPInputError, match="alpha"):
        write_image(target, np.zeros((8, 8, 4), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jpg"] and target.read_bytes() == b"old"


def test_write_creates_folders_and_leaves_no_temporary_file(tmp_path):
    write_image(tmp_path / "sub" / "dir" / "a.tif", np.zeros((4, 4), np.float32))
    assert [p.name for p in (tmp_path / "sub" / "dir").iterdir()] == ["a.tif"]


@pytest.mark.parametrize("name, content, message", [
    ("missing.tif", None, "no such file"),
    ("image.bmp2", b"x", "unknown file type '.bmp2'"),
    ("noextension", b"x", "unknown file type"),
    ("broken.tif", b"not a tiff at all", "cannot read it as tiff"),
    ("broken.png", b"not a png", "cannot read it as png"),
])
def test_read_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DIPInputError, match=message) as info:
        read_image(path)
    assert name in str(info.value)


def test_write_to_an_unknown_type_is_refused(tmp_path):
    with pytest.raises(DIPInputError, match="unknown file type"):
        write_image(tmp_path / "a.xyz", np.zeros((4, 4)))
