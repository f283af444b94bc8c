"""Image files <-> float32 RGB arrays in [0, 1].

Everything in jdrl works on float RGB. Files are read with OpenCV (which keeps
16-bit PNG/TIFF precision, unlike most loaders) and converted once, here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from jdrl.atomic import atomic_write
from jdrl.errors import ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode a file as stored (BGR order, native dtype), raising a readable error."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    data = np.fromfile(str(path), dtype=np.uint8)  # works for any path encoding
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read PNG (8/16-bit), JPEG, TIFF or BMP as float32 RGB ``(H, W, 3)`` in [0, 1]."""
    return to_float_rgb(read_image_raw(path), source=str(path))


def read_image_with_depth(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Like :func:`read_image`, also returning the file's bit depth (8, 16 or 32)."""
    raw = read_image_raw(path)
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
    ok, encoded = cv2.imencode(path.suffix or ".png", quantize(image, bit_depth))
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
