"""Bad and unusual image files: each is read correctly or refused with an ImageReadError naming the path."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageCms, ImageOps

from jdrl import images
from jdrl.atomic import atomic_write, current_umask
from jdrl.errors import ConfigError, ImageReadError
from jdrl.images import (
    MAX_PIXELS,
    image_size,
    read_image,
    read_image_raw,
    read_image_with_depth,
    write_image,
)

# ------------------------------------------------------------------ builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose (valid) IHDR claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b"")


def bomb_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to claim ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def bomb_tiff(width: int, height: int) -> bytes:
    """A small real TIFF whose ImageWidth/ImageLength tags are patched."""
    data = bytearray(pil_bytes(Image.new("RGB", (8, 8)), "TIFF"))
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        (tag,) = struct.unpack_from(order + "H", data, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into(order + "HHI", data, at, tag, 4, 1)
            struct.pack_into(order + "I", data, at + 8, value)
    return bytes(data)


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def cv_bytes(ext: str, array: np.ndarray) -> bytes:
    # uncompressed float TIFF: OpenCV <= 4.12 writes 3-channel float with lossy SGILOG (NaN becomes 0)
    lossless = [cv2.IMWRITE_TIFF_COMPRESSION, 1] if ext in (".tif", ".tiff") and array.dtype.kind == "f" else []
    ok, encoded = cv2.imencode(ext, array, lossless)
    assert ok
    return encoded.tobytes()


def asymmetric(height: int = 24, width: int = 40) -> np.ndarray:
    """An RGB uint8 pattern with no symmetry: blocks of distinct colours, so any flip or rotation shows."""
    y, x = np.mgrid[0:height, 0:width]
    pattern = np.stack([(x * 255) // (width - 1), (y * 255) // (height - 1), ((x // 8 + 2 * (y // 8)) * 40) % 256], axis=2)
    return pattern.astype(np.uint8)


RNG_PIXELS = np.random.default_rng(7).integers(0, 256, size=(16, 20, 3), dtype=np.uint8)


def _symlink_loop(tmp: Path) -> Path:
    a, b = tmp / "loop_a.png", tmp / "loop_b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _dangling(tmp: Path) -> Path:
    link = tmp / "dangling.png"
    link.symlink_to(tmp / "does-not-exist.png")
    return link


def _directory(tmp: Path) -> Path:
    folder = tmp / "x.png"
    folder.mkdir()
    return folder


def _fifo(tmp: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = tmp / "pipe.png"
    os.mkfifo(path)
    return path


def _write(name: str, data: bytes | callable):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data() if callable(data) else data)
        return path

    return make


PNG_OK = lambda: cv_bytes(".png", RNG_PIXELS)
JPEG_OK = lambda: cv_bytes(".jpg", RNG_PIXELS)
NAN_TIFF = lambda: cv_bytes(".tiff", np.where(np.eye(6, 7, dtype=bool)[..., None], np.nan, 0.5).astype(np.float32).repeat(3, axis=2))
INF_TIFF = lambda: cv_bytes(".tiff", np.array([[np.inf, -np.inf, 0.2]], np.float32))

# (id, maker, expected): expected is an ImageReadError message fragment (str) or a dict describing a good read
CORPUS = [
    # --- refused, with the path in the message
    ("zero-byte", _write("empty.png", b""), "empty file"),
    ("text-named-png", _write("notes.png", b"these are my notes, not an image\n"), "not a readable image"),
    ("random-bytes-jpg", _write("noise.jpg", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))), "not a readable image"),
    ("png-signature-only", _write("sig.png", b"\x89PNG\r\n\x1a\n"), "not a readable image"),
    ("truncated-png-half", _write("half.png", lambda: PNG_OK()[: len(PNG_OK()) // 2]), "not a readable image"),
    ("truncated-png-header", _write("head.png", lambda: PNG_OK()[:40]), "not a readable image"),
    ("png-bad-crc", _write("crc.png", lambda: PNG_OK()[:40] + bytes([PNG_OK()[40] ^ 0xFF]) + PNG_OK()[41:]), "not a readable image"),
    ("truncated-jpeg-half", _write("half.jpg", lambda: JPEG_OK()[: len(JPEG_OK()) // 2]), "not a readable image"),
    ("truncated-jpeg-header", _write("head.jpg", lambda: JPEG_OK()[:200]), "not a readable image"),
    ("directory-named-png", _directory, "is a directory"),
    ("missing", lambda tmp: tmp / "nope.png", "no such file"),
    ("symlink-loop", _symlink_loop, "cannot read"),
    ("dangling-symlink", _dangling, "no such file"),
    ("fifo-named-png", _fifo, "not a regular file"),
    ("bomb-png-100000x100000", _write("bomb.png", lambda: bomb_png(100_000, 100_000)), "100000x100000 pixels"),
    ("bomb-png-20000x20000", _write("bomb400.png", lambda: bomb_png(20_000, 20_000)), "20000x20000 pixels"),
    ("bomb-jpeg-60000x60000", _write("bomb.jpg", lambda: bomb_jpeg(60_000, 60_000)), "60000x60000 pixels"),
    ("bomb-tiff-100000x100000", _write("bomb.tif", lambda: bomb_tiff(100_000, 100_000)), "100000x100000 pixels"),
    ("nan-float-tiff", _write("nan.tif", NAN_TIFF), "6 of 42 pixels are NaN or infinite"),
    ("inf-float-tiff", _write("inf.tif", INF_TIFF), "2 of 3 pixels are NaN or infinite"),
    ("int32-tiff", _write("int32.tif", lambda: cv_bytes(".tiff", np.ones((4, 4), np.int32))), "unsupported sample type int32"),
    # --- read correctly
    ("gray-png", _write("gray.png", lambda: cv_bytes(".png", np.full((5, 6), 128, np.uint8))), dict(shape=(5, 6, 3), depth=8, value=128 / 255)),
    ("rgba-png", _write("rgba.png", lambda: cv_bytes(".png", np.full((5, 6, 4), 200, np.uint8))), dict(shape=(5, 6, 3), depth=8, value=200 / 255)),
    ("1bit-png", _write("bits.png", lambda: pil_bytes(Image.new("1", (7, 3), 1), "PNG")), dict(shape=(3, 7, 3), depth=8, value=1.0)),
    ("palette-png", _write("pal.png", lambda: pil_bytes(Image.new("RGB", (7, 3), (255, 0, 0)).convert("P"), "PNG")), dict(shape=(3, 7, 3), depth=8, rgb=(1, 0, 0))),
    ("gray-alpha-png", _write("la.png", lambda: pil_bytes(Image.new("LA", (7, 3), (100, 50)), "PNG")), dict(shape=(3, 7, 3), depth=8, value=100 / 255)),
    ("1x1-png", _write("one.png", lambda: cv_bytes(".png", np.array([[[0, 0, 255]]], np.uint8))), dict(shape=(1, 1, 3), depth=8, rgb=(1, 0, 0))),
    ("unicode-space-path", _write("ünï cödé ☃ photo.png", PNG_OK), dict(shape=(16, 20, 3), depth=8)),
    ("16bit-png", _write("deep.png", lambda: cv_bytes(".png", np.full((4, 5, 3), 65535, np.uint16))), dict(shape=(4, 5, 3), depth=16, value=1.0)),
    ("16bit-gray-tiff", _write("deep.tif", lambda: cv_bytes(".tiff", np.full((4, 5), 32768, np.uint16))), dict(shape=(4, 5, 3), depth=16, value=32768 / 65535)),
    ("cmyk-jpeg", _write("cmyk.jpg", lambda: pil_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100)), dict(shape=(8, 8, 3), depth=8, rgb=(1, 0, 0))),
    ("float-tiff-clipped", _write("f.tif", lambda: cv_bytes(".tiff", np.array([[[-1, 0.25, 7]]], np.float32))), dict(shape=(1, 1, 3), depth=32, rgb=(1, 0.25, 0))),
    ("bmp", _write("a.bmp", lambda: cv_bytes(".bmp", RNG_PIXELS)), dict(shape=(16, 20, 3), depth=8)),
    ("webp-lossless", _write("a.webp", lambda: pil_bytes(Image.fromarray(RNG_PIXELS), "WEBP", lossless=True)), dict(shape=(16, 20, 3), depth=8)),
    ("gif-named-png", _write("gif.png", lambda: pil_bytes(Image.new("RGB", (6, 4), (0, 0, 255)), "GIF")), dict(shape=(4, 6, 3), depth=8, rgb=(0, 0, 1))),
    ("exif-rotated-jpeg", _write("portrait.jpg", lambda: pil_bytes(Image.fromarray(asymmetric()), "JPEG", exif=_exif(6), quality=95)), dict(shape=(40, 24, 3), depth=8)),
]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


HEADER_REFUSALS = ("empty file", "is a directory", "no such file", "cannot read", "not a regular file", "x1")


@pytest.mark.parametrize("name, make, expected", CORPUS, ids=[case[0] for case in CORPUS])
def test_corpus(tmp_path, name, make, expected):
    path = make(tmp_path)
    if isinstance(expected, str):
        for reader in (read_image, read_image_raw, read_image_with_depth):
            with pytest.raises(ImageReadError) as caught:
                reader(path)
            message = str(caught.value)
            assert message.startswith(f"{path}: ") and expected in message, message
        if any(fragment in expected for fragment in HEADER_REFUSALS):
            with pytest.raises(ImageReadError, match=re.escape(f"{path}: ")):
                image_size(path)  # refused from the file system or the header alone
        else:  # a corrupt body only shows when decoding: a size or an ImageReadError, nothing else
            try:
                image_size(path)
            except ImageReadError as error:
                assert str(error).startswith(f"{path}: ")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gray / alpha notices
        image, depth = read_image_with_depth(path)
        assert image_size(path) == image.shape[:2]
    assert image.dtype == np.float32 and image.shape == expected["shape"] and depth == expected["depth"]
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    if "value" in expected:
        assert np.allclose(image, expected["value"], atol=1e-6)
    if "rgb" in expected:
        assert np.allclose(image[0, 0], expected["rgb"], atol=2 / 255)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_permission_names_the_path(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(cv_bytes(".png", RNG_PIXELS))
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match="secret.png: cannot read"):
            read_image(path)
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------ the pixel limit


def test_default_limit_passes_4k_and_8k_and_refuses_400mp(tmp_path):
    for width, height in [(4096, 2160), (7680, 4320), (8192, 5464), (11648, 8736)]:
        (tmp_path / "ok.png").write_bytes(bomb_png(width, height))
        assert image_size(tmp_path / "ok.png") == (height, width)
    assert 11648 * 8736 <= MAX_PIXELS < 20000 * 20000
    (tmp_path / "big.png").write_bytes(bomb_png(20000, 20000))
    with pytest.raises(ImageReadError, match=r"big.png: 20000x20000 pixels \(400 MP\) is over the limit .*JDRL_MAX_PIXELS"):
        image_size(tmp_path / "big.png")


def test_opencv_itself_raises_cv2_error_on_the_bomb():
    """The reason for the header check: OpenCV throws (not returns None) on a 70-byte file."""
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(bomb_png(100_000, 100_000), np.uint8), cv2.IMREAD_UNCHANGED)


def test_limit_raised_past_opencvs_own_still_gives_image_read_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(100_000, 100_000))
    with pytest.raises(ImageReadError, match="bomb.png: .*CV_IO_MAX_IMAGE_PIXELS"):
        read_image(path, max_pixels=10**11)
    assert image_size(path, max_pixels=10**11) == (100_000, 100_000)


def test_limit_from_keyword_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(cv_bytes(".png", RNG_PIXELS))  # 16 x 20 = 320 pixels
    assert read_image(path, max_pixels=320).shape == (16, 20, 3)
    with pytest.raises(ImageReadError, match="a.png: 20x16 pixels .* limit of 319 pixels"):
        read_image(path, max_pixels=319)
    monkeypatch.setenv("JDRL_MAX_PIXELS", "19x16")
    with pytest.raises(ImageReadError, match="limit of 304 pixels"):
        read_image(path)
    with pytest.raises(ImageReadError, match="limit of 304 pixels"):
        image_size(path)
    assert read_image(path, max_pixels=1000).shape == (16, 20, 3)  # the keyword wins
    monkeypatch.setenv("JDRL_MAX_PIXELS", "1_000")
    assert read_image(path).shape == (16, 20, 3)
    monkeypatch.setenv("JDRL_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="JDRL_MAX_PIXELS"):
        read_image(path)
    with pytest.raises(ValueError):
        read_image(path, max_pixels=0)


def test_any_cv2_error_becomes_image_read_error(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(cv_bytes(".png", RNG_PIXELS))

    def broken(*args, **kwargs):
        raise cv2.error("OpenCV(5.1.0) somewhere: error: (-4:Insufficient memory) Failed to allocate")

    monkeypatch.setattr(images.cv2, "imdecode", broken)
    with pytest.raises(ImageReadError, match="a.png: not a readable image .*Insufficient memory"):
        read_image(path)


def test_write_image_encode_failure_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="a.xyz: could not encode"):
        write_image(tmp_path / "a.xyz", np.zeros((2, 2, 3)))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ EXIF orientation

# What a viewer shows for each orientation, from the stored pixels (Pillow's own transposes, as exif_transpose)
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.asarray(Image.fromarray(a).transpose(Image.Transpose.TRANSPOSE)),
    6: lambda a: np.asarray(Image.fromarray(a).transpose(Image.Transpose.ROTATE_270)),
    7: lambda a: np.asarray(Image.fromarray(a).transpose(Image.Transpose.TRANSVERSE)),
    8: lambda a: np.asarray(Image.fromarray(a).transpose(Image.Transpose.ROTATE_90)),
}


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP", "PNG", "JPEG"])
def test_all_eight_orientations_come_out_upright(tmp_path, fmt):
    stored = asymmetric()
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 100, "subsampling": 0}}.get(fmt, {})
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.{fmt.lower()}"
        path.write_bytes(pil_bytes(Image.fromarray(stored), fmt, exif=_exif(orientation), **options))
        expected = UPRIGHT[orientation](stored).astype(np.float32) / 255
        # Pillow's exif_transpose is the independent reference for what a viewer shows
        with Image.open(path) as opened:
            viewer = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        assert viewer.shape == expected.shape
        image = read_image(path)
        assert image.shape == expected.shape, (fmt, orientation)
        assert image_size(path) == expected.shape[:2]
        tolerance = 4 / 255 if fmt == "JPEG" else 1e-6
        assert np.abs(image - expected).max() <= tolerance, (fmt, orientation)
        assert np.abs(image - viewer.astype(np.float32) / 255).max() <= tolerance, (fmt, orientation)


def test_orientation_6_jpeg_is_rotated_clockwise(tmp_path):
    stored = asymmetric()
    path = tmp_path / "phone.jpg"
    path.write_bytes(pil_bytes(Image.fromarray(stored), "JPEG", exif=_exif(6), quality=95))
    image = read_image(path)
    assert image.shape == (40, 24, 3)
    expected = np.rot90(stored, -1).astype(np.float32) / 255  # 90 degrees clockwise
    wrong = np.rot90(stored, 1).astype(np.float32) / 255
    assert np.abs(image - expected).mean() < 6 / 255  # JPEG (4:2:0) loss
    assert np.abs(image - wrong).mean() > 60 / 255


# ------------------------------------------------------------------ ICC profiles


def _profile_bytes(name: str) -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile(name)).tobytes()


def test_non_srgb_profile_warns_once_per_file(tmp_path):
    path = tmp_path / "lab.png"
    path.write_bytes(pil_bytes(Image.fromarray(RNG_PIXELS), "PNG", icc_profile=_profile_bytes("LAB")))
    with pytest.warns(UserWarning, match=r"lab.png: colour profile 'Lab identity built-in' is not sRGB"):
        image = read_image(path)
    assert np.allclose(image, RNG_PIXELS / 255)  # no conversion
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(path)  # the second read is quiet


def test_unparseable_profile_warns(tmp_path):
    path = tmp_path / "odd.jpg"
    path.write_bytes(pil_bytes(Image.fromarray(RNG_PIXELS), "JPEG", icc_profile=b"\0" * 200))
    with pytest.warns(UserWarning, match="odd.jpg: an unrecognised colour profile is not sRGB"):
        read_image(path)


def test_srgb_profile_is_quiet(tmp_path):
    path = tmp_path / "srgb.png"
    path.write_bytes(pil_bytes(Image.fromarray(RNG_PIXELS), "PNG", icc_profile=_profile_bytes("sRGB")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(path)


# ------------------------------------------------------------------ permissions of written files


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        write_image(tmp_path / "out.png", np.zeros((2, 2, 3)))
        with atomic_write(tmp_path / "other.bin") as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "other.bin").stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, np.zeros((2, 2, 3)))
    path.chmod(0o640)
    write_image(path, np.ones((2, 2, 3)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert read_image(path).min() == 1.0
