"""Image IO for packets: one lossless output path whose file size depends only on the shape.

A compressed PNG of a noisier image is bigger, and the protected slice is a little noisier
than its original, so the byte size of an ordinary PNG tells which version a file is. Packet
images are therefore written as 16-bit greyscale PNGs with zlib level 0 (stored blocks, no
compression) and no ancillary chunks: for a given (H, W) every file has the same byte size
and the same chunk layout, whatever the pixels. Both versions are decoded from their source
PNG with :func:`medcrypt.medical.decode_png16` and re-encoded identically here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from medcrypt.errors import ImageFormatError, StudyError

__all__ = ["decode_slice", "encode_packet_png", "pad_to", "read_slice_png"]

_LEVELS = 65535


def decode_slice(data: bytes, *, case_id: str, uri: str) -> np.ndarray:
    """Decode one source slice (16-bit PNG bytes) to float32 (H, W) in [0, 1]."""
    from medcrypt.medical import decode_png16

    try:
        array = decode_png16(data)
    except ImageFormatError as exc:
        raise StudyError(
            f"not a usable slice PNG: {exc.message}", case_id=case_id, uri=uri
        ) from exc
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise StudyError(
            f"expected a 2D greyscale slice, got an array of shape {array.shape}",
            case_id=case_id,
            uri=uri,
        )
    return array


def read_slice_png(path: Path, *, case_id: str) -> np.ndarray:
    """Read and decode one source slice file (see :func:`decode_slice`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StudyError(f"cannot read slice: {exc}", case_id=case_id, uri=str(path)) from exc
    return decode_slice(data, case_id=case_id, uri=str(path))


def pad_to(array01: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre ``array01`` on a zero (black) canvas of ``shape``; no pixel is changed."""
    h, w = array01.shape
    out_h, out_w = shape
    if h > out_h or w > out_w:
        raise ValueError(f"cannot pad {array01.shape} into a smaller canvas {shape}")
    canvas = np.zeros(shape, dtype=np.float32)
    top = (out_h - h) // 2
    left = (out_w - w) // 2
    canvas[top : top + h, left : left + w] = array01
    return canvas


def encode_packet_png(array01: np.ndarray) -> bytes:
    """16-bit greyscale PNG, uncompressed (zlib level 0), no ancillary chunks.

    Values are rounded (not truncated) to 16 bits, so a slice that came from a 16-bit PNG
    round-trips exactly. The size of the result depends only on ``array01.shape``.
    """
    if array01.ndim != 2:
        raise ValueError(f"expected a 2D array, got shape {array01.shape}")
    if not np.all(np.isfinite(array01)):
        raise ValueError("image holds NaN or infinite values")
    levels = np.rint(np.clip(array01, 0.0, 1.0) * _LEVELS).astype(np.uint16)
    image = Image.fromarray(levels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0, optimize=False)
    return buffer.getvalue()
