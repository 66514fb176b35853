"""Lossless 16-bit greyscale PNG for [0, 1] float images (Pillow)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from medcrypt.errors import ImageFormatError

__all__ = ["PNG16_LEVELS", "decode_png16", "encode_png16", "to_uint16"]

#: Largest 16-bit code; pixel x in [0, 1] is stored as round(x * PNG16_LEVELS).
PNG16_LEVELS = 65535

# How far outside [0, 1] a float may stray (rounding noise) before it is an error.
_RANGE_SLACK = 1e-6


def to_uint16(array01: np.ndarray) -> np.ndarray:
    """Quantise a 2D [0, 1] float image to uint16 codes, rounding to nearest (not truncating).

    Raises:
        ValueError: not 2D, not finite, or outside [0, 1] by more than rounding noise.
    """
    a = np.asarray(array01)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D image (H, W), got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError("expected finite pixel values, got NaN or Inf")
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise ValueError(f"expected pixel values in [0, 1], got range [{lo:.6g}, {hi:.6g}]")
    codes = np.rint(np.clip(a, 0.0, 1.0) * PNG16_LEVELS)
    return codes.astype(np.uint16)


def encode_png16(array01: np.ndarray) -> bytes:
    """Encode a 2D [0, 1] image as a 16-bit greyscale PNG (values rounded, not truncated).

    Row 0 of the array is the top row of the PNG. Decoding with :func:`decode_png16` returns
    the input to within half a code, 0.5 / 65535.
    """
    codes = to_uint16(array01)
    img = Image.fromarray(codes)  # mode "I;16": native uint16, written as 16-bit greyscale
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a greyscale PNG (16-bit, or 8-bit scaled by 1/255) to a float32 [0, 1] array.

    Raises:
        ImageFormatError: the bytes are not a PNG, or not a single-channel greyscale one.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise ImageFormatError(f"expected a PNG image, got {img.format} data")
            mode = img.mode
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFormatError(
            f"expected 16-bit greyscale PNG bytes, got undecodable data ({exc})"
        ) from exc
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        if arr.min(initial=0) < 0 or arr.max(initial=0) > PNG16_LEVELS:
            raise ImageFormatError(f"16-bit PNG holds values outside 0..65535 (mode {mode})")
        return (arr.astype(np.float64) / PNG16_LEVELS).astype(np.float32)
    if mode == "L":
        return (arr.astype(np.float64) / 255.0).astype(np.float32)
    raise ImageFormatError(f"expected a greyscale PNG (mode I;16 or L), got mode {mode!r}")
