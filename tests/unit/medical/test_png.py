"""16-bit PNG: lossless to half a code, rounded not truncated, and refusing bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medcrypt.errors import ImageFormatError
from medcrypt.medical import decode_png16, encode_png16


def test_round_trip_within_half_a_code() -> None:
    rng = np.random.default_rng(7)
    a = rng.random((37, 53)).astype(np.float32)
    a[0, 0], a[0, 1] = 0.0, 1.0
    back = decode_png16(encode_png16(a))
    assert back.dtype == np.float32
    assert back.shape == a.shape
    assert np.abs(back.astype(np.float64) - a).max() <= 0.5 / 65535 + 1e-9
    assert back[0, 0] == 0.0 and back[0, 1] == 1.0


def test_values_are_rounded_not_truncated() -> None:
    # 0.9 of a code must become the next code up; truncation would give the lower one.
    a = np.array([[0.9 / 65535, 1.4 / 65535, 1.6 / 65535, 65534.7 / 65535]], dtype=np.float64)
    with Image.open(io.BytesIO(encode_png16(a))) as img:
        codes = np.asarray(img).astype(np.int64)
    assert codes.tolist() == [[1, 1, 2, 65535]]


def test_png_is_16_bit_greyscale_and_row_zero_is_top() -> None:
    a = np.zeros((4, 3))
    a[0, :] = 1.0
    with Image.open(io.BytesIO(encode_png16(a))) as img:
        assert img.mode.startswith("I;16")
        assert img.size == (3, 4)
        assert np.asarray(img)[0].tolist() == [65535, 65535, 65535]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 2, 2)), np.full((2, 2), np.nan), np.full((2, 2), 1.01), np.full((2, 2), -0.1)],
)
def test_encode_refuses_bad_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        encode_png16(bad)


def test_decode_refuses_non_png_and_colour() -> None:
    with pytest.raises(ImageFormatError, match="undecodable"):
        decode_png16(b"not a png at all")
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    with pytest.raises(ImageFormatError, match="greyscale"):
        decode_png16(buf.getvalue())
