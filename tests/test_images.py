import warnings

import cv2
import numpy as np
import pytest

from jdrl.images import ImageReadError, read_image, read_image_with_depth, write_image


def test_8bit_png_round_trip_is_exact(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", pixels.astype(np.float32) / 255)
    image, depth = read_image_with_depth(tmp_path / "a.png")
    assert depth == 8 and image.dtype == np.float32 and image.shape == (17, 23, 3)
    assert np.array_equal(np.round(image * 255).astype(np.uint8), pixels)


def test_16bit_png_round_trip_is_exact(tmp_path, rng):
    pixels = rng.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    write_image(tmp_path / "a.png", pixels.astype(np.float64) / 65535, bit_depth=16)
    raw = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    image, depth = read_image_with_depth(tmp_path / "a.png")
    assert depth == 16
    assert np.array_equal(np.round(image.astype(np.float64) * 65535).astype(np.uint16), pixels)


def test_channel_order_is_rgb(tmp_path):
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_gray_is_replicated_with_a_warning(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 128, np.uint8))
    with pytest.warns(UserWarning, match="grayscale"):
        image = read_image(tmp_path / "g.png")
    assert image.shape == (5, 6, 3) and np.allclose(image, 128 / 255)


def test_rgba_drops_alpha_with_a_warning(tmp_path):
    bgra = np.zeros((5, 6, 4), np.uint8)
    bgra[..., 1] = 200
    bgra[..., 3] = 7
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    with pytest.warns(UserWarning, match="alpha"):
        image = read_image(tmp_path / "a.png")
    assert image.shape == (5, 6, 3) and np.allclose(image[..., 1], 200 / 255) and np.allclose(image[..., 0], 0)


@pytest.mark.parametrize("ext", [".jpg", ".tif", ".bmp"])
def test_other_formats_read(tmp_path, ext):
    ramp = np.linspace(0, 255, 32)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 255 - ramp[None, :]), axis=2).astype(np.uint8)
    cv2.imwrite(str(tmp_path / f"a{ext}"), pixels)
    image = read_image(tmp_path / f"a{ext}")
    error = np.abs(image[..., ::-1] * 255 - pixels).mean()
    assert error <= (3 if ext == ".jpg" else 1e-3)


def test_16bit_tiff_keeps_precision(tmp_path):
    pixels = np.arange(3 * 4 * 3, dtype=np.uint16).reshape(3, 4, 3) * 1000 + 1
    cv2.imwrite(str(tmp_path / "a.tif"), pixels)
    image, depth = read_image_with_depth(tmp_path / "a.tif")
    assert depth == 16
    assert np.array_equal(np.round(image[..., ::-1].astype(np.float64) * 65535).astype(np.uint16), pixels)


def test_unreadable_and_missing_files_name_the_path(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_write_leaves_no_temporary_files(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "sub" / "x.png", np.zeros((3, 3, 3)))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]
