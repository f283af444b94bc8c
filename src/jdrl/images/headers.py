"""What an image file's header says, read without decoding a pixel: the stored size, the format, the EXIF/TIFF
orientation, the ICC profile and the bits per sample (:func:`read_header`).

Pillow's header parsers are asked first (when Pillow is installed), and a few lines of PNG/JPEG/TIFF parsing
fill in what they do not say (the TIFF orientation's byte offset, the bits per sample) or stand in without
Pillow. :mod:`jdrl.images` checks the pixel limit and the orientation against this before decoding.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, replace
from functools import lru_cache


@dataclass(frozen=True)
class Header:
    """What a file's header says (:func:`read_header`)."""

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


def _pillow_header(fp) -> Header | None:
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
            return Header(int(width), int(height), getattr(image, "format", None) or fmt,
                           orientation if 1 <= orientation <= 8 else 1, image.info.get("icc_profile") or None)
        except Exception:  # noqa: BLE001, S112 - not this format, or a header Pillow cannot parse: OpenCV will tell
            continue
    return None


def _tiff_header(fp, head: bytes) -> Header | None:
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
    return Header(tags[256][0], tags[257][0], "TIFF", orientation if 1 <= orientation <= 8 else 1,
                   orientation_offset=offset if offset >= 0 else None, bits=tags.get(258, (None, -1))[0])


def _jpeg_header(fp) -> Header | None:
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
            return Header(width, height, "JPEG")
        if length < 2:
            return None
        fp.seek(length - 2, io.SEEK_CUR)


def _own_header(fp) -> Header | None:
    """PNG, JPEG and TIFF sizes (and the TIFF orientation tag) parsed by hand."""
    fp.seek(0)
    head = fp.read(25)
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return Header(width, height, "PNG", bits=head[24] if len(head) > 24 else None)
        if head[:2] == b"\xff\xd8":
            return _jpeg_header(fp)
        return _tiff_header(fp, head)
    except (struct.error, OSError, ValueError):
        return None


def read_header(fp) -> Header | None:
    """What the header of a seekable binary file says, or ``None`` for a format neither parser knows."""
    own = _own_header(fp)
    pil = _pillow_header(fp)
    if pil is None:
        return own
    if own is not None and own.format == "TIFF":
        # the stored size (Pillow reports TIFF orientations 5-8 already swapped) and where the
        # orientation value lies, to neutralise it
        return Header(own.width, own.height, pil.format, pil.orientation, pil.icc_profile, own.orientation_offset,
                       own.bits)
    return replace(pil, bits=own.bits) if own is not None and own.format == pil.format else pil
