"""Image files <-> float32 RGB arrays in [0, 1].

Everything in jdrl works on float RGB. Files are read with OpenCV (which keeps
16-bit PNG/TIFF precision, unlike most loaders) and converted once, here.

Reading is defensive; every way a file can fail becomes one
:class:`~jdrl.errors.ImageReadError` whose message starts with the path:

* **Pixel limit.** The header is read first (Pillow, or a few lines of PNG/JPEG/TIFF
  parsing) and an image of more than :data:`MAX_PIXELS` pixels (16384 x 16384, about
  268 MP: 8K frames and 100 MP photos pass, a 400 MP "decompression bomb" does not) is
  refused before anything is decoded. Raise it with ``read_image(path, max_pixels=N)``
  or the environment variable ``JDRL_MAX_PIXELS`` (a pixel count such as ``500000000``
  or a size such as ``30000x20000``); the keyword wins over the variable. OpenCV has a
  limit of its own (``CV_IO_MAX_IMAGE_PIXELS``, 2**30 pixels by default, read when
  ``cv2`` is imported) that applies on top.
* **EXIF orientation** (phone portraits) is applied, all eight values, for JPEG, PNG,
  WebP and TIFF, so arrays come out as an image viewer shows the file.
  :func:`image_size` reports the size after orientation, too.
* **Colour profiles** are not converted; a file that embeds an ICC profile other than
  sRGB gets one warning (per path and process) naming the profile.
* **Float images** (32-bit TIFF) with NaN or infinite pixels are refused (they would
  turn black, or spread NaN through a network); finite values are clipped to [0, 1].
* Gray, gray+alpha, palette, 1-bit, RGBA and CMYK files become RGB (alpha dropped,
  with a warning for gray and alpha as before). Integer samples other than 8/16-bit
  unsigned are refused.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from jdrl.atomic import atomic_write
from jdrl.errors import ConfigError, ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

MAX_PIXELS = 16384 * 16384
"""Default largest image (width x height) that is decoded: 268,435,456 pixels (about 3.2 GB as float RGB)."""

MAX_PIXELS_ENV = "JDRL_MAX_PIXELS"
"""Environment variable that replaces :data:`MAX_PIXELS` (a count, or ``WIDTHxHEIGHT``)."""

_DECODE_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION  # orientation is applied here, once


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# ------------------------------------------------------------------ the pixel limit


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$JDRL_MAX_PIXELS``, else :data:`MAX_PIXELS`."""
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, not {max_pixels!r}")
        return int(max_pixels)
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        parts = [int(part) for part in text.lower().replace("*", "x").split("x")]
        if len(parts) > 2 or min(parts) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{MAX_PIXELS_ENV}={text!r} is not a positive pixel count (e.g. 500000000) or size (e.g. 30000x20000)"
        ) from None
    return int(np.prod(parts, dtype=object))


def _check_limit(path: Path, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise ImageReadError(
            f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} MP) is over the limit of "
            f"{limit} pixels ({limit / 1e6:.0f} MP; a guard against decompression bombs); if the file is "
            f"trusted, raise it with {MAX_PIXELS_ENV}=<pixels> or read_image(..., max_pixels=...)"
        )


# ------------------------------------------------------------------ headers


@dataclass(frozen=True)
class _Header:
    width: int  # as stored, before orientation
    height: int
    format: str
    orientation: int = 1  # EXIF/TIFF orientation, 1..8
    icc_profile: bytes | None = None
    orientation_offset: int | None = None  # TIFF: byte offset of the orientation value (SHORT), to neutralise it
    bits: int | None = None  # bits per sample as stored (PNG and TIFF), to catch a decoder that reduces them

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(height, width)`` as the image is shown (orientations 5-8 swap the sides)."""
        return (self.width, self.height) if self.orientation in (5, 6, 7, 8) else (self.height, self.width)


_PIL_PLUGINS = ("PngImagePlugin", "JpegImagePlugin", "TiffImagePlugin", "BmpImagePlugin", "WebPImagePlugin",
                "PpmImagePlugin", "SunImagePlugin", "Jpeg2KImagePlugin", "GifImagePlugin")
_PIL_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "DIB", "WEBP", "PPM", "SUN", "JPEG2000", "GIF")  # what OpenCV decodes too


@lru_cache(maxsize=1)
def _pillow_openers() -> tuple:
    """Pillow's header parsers for the formats OpenCV decodes, as ``(format, factory, accept)``; empty without Pillow."""
    import importlib

    try:
        from PIL import Image
    except ImportError:
        return ()
    for name in _PIL_PLUGINS:
        try:
            importlib.import_module(f"PIL.{name}")
        except Exception:  # noqa: BLE001, S110 - a plugin whose C library is missing: fewer formats
            pass
    registry = getattr(Image, "OPEN", {})
    return tuple((fmt, *registry[fmt]) for fmt in _PIL_FORMATS if fmt in registry)


def _pillow_header(fp) -> _Header | None:
    """Size, orientation and ICC profile as Pillow reads them from the header (no pixel data).

    Pillow's plugin classes are called directly: ``Image.open`` would apply Pillow's own
    decompression-bomb limit, which is not ours (and would hide the claimed size).
    """
    fp.seek(0)
    prefix = fp.read(16)
    for fmt, factory, accept in _pillow_openers():
        try:
            accepted = accept(prefix) if accept is not None else True
            if isinstance(accepted, str) or not accepted:  # a str is Pillow's "almost, but no"
                continue
            fp.seek(0)
            image = factory(fp, "")
            orientation = 1
            # PngImageFile.getexif() decodes the whole image when no eXIf chunk precedes the pixels
            if image.format != "PNG" or "exif" in image.info:
                try:
                    orientation = int(image.getexif().get(0x0112, 1) or 1)
                except Exception:  # noqa: BLE001 - unreadable EXIF: as stored
                    orientation = 1
            width, height = image.size
            return _Header(int(width), int(height), getattr(image, "format", None) or fmt,
                           orientation if 1 <= orientation <= 8 else 1, image.info.get("icc_profile") or None)
        except Exception:  # noqa: BLE001, S112 - not this format, or a header Pillow cannot parse: OpenCV will tell
            continue
    return None


def _tiff_header(fp, head: bytes) -> _Header | None:
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(head[:4])
    if order is None or len(head) < 8:
        return None
    (ifd,) = struct.unpack(order + "I", head[4:8])
    fp.seek(ifd)
    raw_count = fp.read(2)
    if len(raw_count) < 2:
        return None
    (count,) = struct.unpack(order + "H", raw_count)
    entries = fp.read(12 * count)
    tags: dict[int, tuple[int, int]] = {}
    for i in range(len(entries) // 12):
        tag, kind, count = struct.unpack_from(order + "HHI", entries, 12 * i)
        if kind == 3 and count > 2:  # SHORTs stored elsewhere (BitsPerSample of RGB): the first one
            (where,) = struct.unpack_from(order + "I", entries, 12 * i + 8)
            fp.seek(where)
            first = fp.read(2)
            if len(first) == 2:
                tags[tag] = (struct.unpack(order + "H", first)[0], -1)
        elif kind == 3:  # SHORT
            tags[tag] = (struct.unpack_from(order + "H", entries, 12 * i + 8)[0], ifd + 2 + 12 * i + 8)
        elif kind == 4:  # LONG
            tags[tag] = (struct.unpack_from(order + "I", entries, 12 * i + 8)[0], -1)
    if 256 not in tags or 257 not in tags:
        return None
    orientation, offset = tags.get(274, (1, -1))
    return _Header(tags[256][0], tags[257][0], "TIFF", orientation if 1 <= orientation <= 8 else 1,
                   orientation_offset=offset if offset >= 0 else None, bits=tags.get(258, (None, -1))[0])


def _jpeg_header(fp) -> _Header | None:
    fp.seek(2)
    while True:
        marker = fp.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + fp.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        length_bytes = fp.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if marker[1] in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            frame = fp.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return _Header(width, height, "JPEG")
        if length < 2:
            return None
        fp.seek(length - 2, io.SEEK_CUR)


def _own_header(fp) -> _Header | None:
    """PNG, JPEG and TIFF sizes (and the TIFF orientation tag) parsed by hand."""
    fp.seek(0)
    head = fp.read(25)
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return _Header(width, height, "PNG", bits=head[24] if len(head) > 24 else None)
        if head[:2] == b"\xff\xd8":
            return _jpeg_header(fp)
        return _tiff_header(fp, head)
    except (struct.error, OSError, ValueError):
        return None


def _read_header(fp) -> _Header | None:
    """What the header of a seekable binary file says, or ``None`` for a format neither parser knows."""
    own = _own_header(fp)
    pil = _pillow_header(fp)
    if pil is None:
        return own
    if own is not None and own.format == "TIFF":
        # the stored size (Pillow reports TIFF orientations 5-8 already swapped) and where the
        # orientation value lies, to neutralise it
        return _Header(own.width, own.height, pil.format, pil.orientation, pil.icc_profile, own.orientation_offset,
                       own.bits)
    return replace(pil, bits=own.bits) if own is not None and own.format == pil.format else pil


# ------------------------------------------------------------------ reading


def _check_file(path: Path) -> None:
    """Refuse what is not a non-empty regular file, with the reason."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as error:  # a symlink loop, a name too long, a folder we may not enter
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def _read_bytes(path: Path) -> bytes:
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from None


def image_size(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(height, width)`` of an image as :func:`read_image` would return it, from the header only.

    Raises :class:`ImageReadError` where :func:`read_image` would for the file itself
    (missing, a directory, empty...) or for its header (over the pixel limit). A format
    whose header neither Pillow nor jdrl parses is decoded to find out. A corrupt body
    is only found by decoding (:func:`read_image_raw`).
    """
    path = Path(path)
    limit = pixel_limit(max_pixels)
    _check_file(path)
    try:
        with open(path, "rb") as handle:
            header = _read_header(handle)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from None
    if header is None:
        raw = read_image_raw(path, max_pixels=limit)
        return int(raw.shape[0]), int(raw.shape[1])
    _check_limit(path, header.width, header.height, limit)
    return header.oriented_size


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an array stored with EXIF ``orientation`` (1..8) upright; rows and columns are the first two axes."""
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = image.swapaxes(0, 1)
    elif orientation == 6:
        image = np.rot90(image, -1)
    elif orientation == 7:
        image = image[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        image = np.rot90(image, 1)
    return np.ascontiguousarray(image)


_warned_profiles: set[str] = set()
_warned_lock = threading.Lock()


def _profile_name(icc: bytes) -> str | None:
    """The ICC profile's description, or ``None`` when it cannot be read."""
    try:
        from PIL import ImageCms

        return str(ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description or "").strip() or None
    except Exception:  # noqa: BLE001 - no Pillow/LittleCMS, or not a valid profile
        return None


def _warn_profile(path: Path, icc: bytes) -> None:
    name = _profile_name(icc)
    if (b"sRGB" in icc) if name is None else ("srgb" in name.lower()):
        return
    key = str(path)
    with _warned_lock:
        if key in _warned_profiles:
            return
        _warned_profiles.add(key)
    described = f"colour profile {name!r}" if name else "an unrecognised colour profile"
    warnings.warn(f"{path}: {described} is not sRGB; its pixel values are used as stored, with no colour conversion",
                  stacklevel=4)


def _decode(path: Path, data: bytes | bytearray, limit: int) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    except cv2.error as error:
        text = str(error)
        if "CV_IO_MAX_IMAGE_PIXELS" in text:
            raise ImageReadError(
                f"{path}: over OpenCV's own pixel limit (CV_IO_MAX_IMAGE_PIXELS, 2**30 by default); "
                "set that environment variable before Python starts to read it"
            ) from None
        reason = text.strip().splitlines()[-1] if text.strip() else "decoder error"
        raise ImageReadError(f"{path}: not a readable image (OpenCV: {reason})") from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to decode it") from None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    return image


JPEG_FILL = 128  # what libjpeg puts where the compressed data ended before the image its header describes
JPEG_MCU = 8  # the smallest block a JPEG stores


def _refuse_gray_fill(path: Path, image: np.ndarray) -> None:
    """A JPEG whose data ends before the size its header claims (truncated, or a header that lies) decodes with
    a warning on the terminal and the missing blocks filled with flat gray: refuse it instead of using that.

    The test: the last block row is exactly 128 in every channel. A photo whose bottom 8 rows are exactly that
    value is not something a camera makes; a file that really holds such a border can be converted to PNG.
    """
    if image.dtype != np.uint8 or image.shape[0] < 2 * JPEG_MCU:
        return
    if bool((image[-JPEG_MCU:] == JPEG_FILL).all()):
        raise ImageReadError(f"{path}: the JPEG data ends before the {image.shape[1]}x{image.shape[0]} image its "
                             "header describes (its last rows are the decoder's flat gray fill): the file is "
                             "truncated or its header is wrong")


def read_image_raw(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a file as stored (BGR order, native dtype), upright, raising a readable error.

    The header is checked against the pixel limit (see :func:`pixel_limit`) before
    decoding; EXIF orientation is applied; float files with NaN/inf pixels are refused.
    """
    path = Path(path)
    limit = pixel_limit(max_pixels)
    data = _read_bytes(path)
    header = _read_header(io.BytesIO(data))
    orientation = 1
    if header is not None:
        _check_limit(path, header.width, header.height, limit)
        orientation = header.orientation
        if orientation != 1 and header.format == "TIFF":
            if header.orientation_offset is None:
                orientation = 1  # cannot neutralise the tag: OpenCV applies TIFF orientation itself
            else:  # OpenCV applies TIFF orientation even with IMREAD_IGNORE_ORIENTATION: store 1, rotate here
                order = "<" if data[:2] == b"II" else ">"
                data = bytearray(data)
                struct.pack_into(order + "H", data, header.orientation_offset, 1)
    image = _decode(path, data, limit)
    del data
    if header is not None and header.format in ("JPEG", "MPO"):
        _refuse_gray_fill(path, image)
    if header is not None and (header.bits or 0) > 8 and image.dtype == np.uint8:
        raise ImageReadError(f"{path}: stores {header.bits}-bit samples, but OpenCV decodes this layout (e.g. gray + "
                             f"alpha) as 8-bit; re-save it as a 16-bit PNG (gray, RGB or RGBA) so no precision is lost")
    _check_limit(path, image.shape[1], image.shape[0], limit)  # formats without a parsed header
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ImageReadError(f"{path}: unsupported layout of {image.shape} (expected gray, RGB or RGBA)")
    if image.dtype.kind in "iub" and image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {image.dtype} (expected 8/16-bit unsigned or float)")
    if image.dtype.kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            bad = int((~finite).reshape(image.shape[0], image.shape[1], -1).any(axis=2).sum())
            raise ImageReadError(
                f"{path}: {bad} of {image.shape[0] * image.shape[1]} pixels are NaN or infinite; "
                "refusing a float image that would come out black or spread NaN (fix or re-export it)"
            )
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        image = image[:, :, :1]
    if orientation != 1:
        image = apply_orientation(image, orientation)
    if header is not None and header.icc_profile:
        _warn_profile(path, header.icc_profile)
    return image


def bit_depth_of(raw: np.ndarray) -> int:
    """8 for uint8 files, 16 for uint16, 32 for float files."""
    return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(raw.dtype, 32)


def to_float_rgb(raw: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert a raw OpenCV image (BGR/gray/BGRA, any depth) to float32 RGB in [0, 1]."""
    if raw.dtype == np.uint8:
        image = raw.astype(np.float32) / 255.0
    elif raw.dtype == np.uint16:
        image = raw.astype(np.float32) / 65535.0
    else:
        image = np.clip(raw.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2 or image.shape[2] == 1:
        warnings.warn(f"{source}: grayscale image replicated to RGB", stacklevel=3)
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    elif image.shape[2] == 4:
        warnings.warn(f"{source}: alpha channel dropped", stacklevel=3)
        image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1])


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read PNG (8/16-bit), JPEG, TIFF, BMP or WebP as float32 RGB ``(H, W, 3)`` in [0, 1], upright.

    ``max_pixels`` overrides the pixel limit (default :data:`MAX_PIXELS`, or ``$JDRL_MAX_PIXELS``).
    Any failure is an :class:`ImageReadError` naming the path.
    """
    return to_float_rgb(read_image_raw(path, max_pixels=max_pixels), source=str(path))


def read_image_with_depth(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[np.ndarray, int]:
    """Like :func:`read_image`, also returning the file's bit depth (8, 16 or 32)."""
    raw = read_image_raw(path, max_pixels=max_pixels)
    return to_float_rgb(raw, source=str(path)), bit_depth_of(raw)


def quantize(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8/uint16 with rounding (not truncation)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, not {bit_depth}")
    top = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def write_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8) -> Path:
    """Write float RGB ``(H, W, 3)`` (or gray ``(H, W)``) in [0, 1] as an 8- or 16-bit PNG.

    The file appears atomically (temporary file + rename), so a crash never
    leaves a half-written image behind.
    """
    path = Path(path)
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[:, :, ::-1]  # RGB -> BGR for OpenCV
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", quantize(image, bit_depth))
    except cv2.error as error:
        raise OSError(f"{path}: could not encode image ({str(error).strip().splitlines()[-1]})") from None
    if not ok:
        raise OSError(f"{path}: could not encode image")
    with atomic_write(path) as handle:
        handle.write(encoded.tobytes())
    return path


def image_to_tensor(image: np.ndarray):
    """``(H, W, 3)`` float array -> ``(3, H, W)`` torch tensor (shares no memory)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def tensor_to_image(tensor) -> np.ndarray:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor -> ``(H, W, 3)`` float32 array."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError("tensor_to_image takes a single image")
        tensor = tensor[0]
    return tensor.detach().float().cpu().numpy().transpose(1, 2, 0)
