"""Image files <-> float32 RGB arrays in [0, 1].

Everything in jdrl works on float RGB. Files are read with OpenCV (which keeps
16-bit PNG/TIFF precision, unlike most loaders) and converted once, here.

Reading is defensive; every way a file can fail becomes one
:class:`~jdrl.errors.ImageReadError` whose message starts with the path:

* **Pixel limit.** The header is read first (Pillow, or a few lines of PNG/JPEG/TIFF
  parsing: :mod:`jdrl.images.headers`) and an image of more than :data:`MAX_PIXELS`
  pixels (16384 x 16384, about 268 MP: 8K frames and 100 MP photos pass, a 400 MP
  "decompression bomb" does not) is refused before anything is decoded. Raise it with
  ``read_image(path, max_pixels=N)`` or the environment variable ``JDRL_MAX_PIXELS``
  (a pixel count such as ``500000000`` or a size such as ``30000x20000``); the keyword
  wins over the variable. OpenCV has a limit of its own (``CV_IO_MAX_IMAGE_PIXELS``,
  2**30 pixels by default, read when ``cv2`` is imported) that applies on top.
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
from pathlib import Path

import cv2
import numpy as np

from jdrl.atomic import atomic_write
from jdrl.errors import ConfigError, ImageReadError
from jdrl.images.headers import read_header

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
            header = read_header(handle)
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
    header = read_header(io.BytesIO(data))
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
