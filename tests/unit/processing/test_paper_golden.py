"""The ``paper`` mode's outputs stay bit-identical for a fixed case (issue 23).

The per-pixel cap (``linf_cap``) entered every projection; a key without it must run the
paper's computation exactly as before. The hashes below were taken on the code from before
the cap existed (main at 45a881b), fp32 on one CPU thread: a fixed tiny case, a fixed key
(secret included) and a fixed untrained model seed, through both of the paper mode's
projection paths (whole slice: ``enforce_budget``; foreground: ``apply_budget``).

Bit-identity of float32 convolutions holds for one torch build on one CPU kind; on other
hardware (another oneDNN kernel) the PGD trajectory can differ in the last bits, and these
hashes would need retaking from the old code there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from medcrypt.processing import EncryptionKey, Encryptor, PGDSettings, build_model, quantise

CLASSES = ("left", "right", "bottom")

Blobs = tuple[np.ndarray, np.ndarray]
pytestmark = pytest.mark.usefixtures("one_thread")

#: (foreground, sha256 of the float32 released images, of their 16-bit codes), old code
GOLDEN = {
    False: (
        "75c8596d3e042349ee4904abe17ed79388b2c640d23b72cace19ec0492de2a33",
        "e013f4a1806d6bbaa28ce6a6d39dc15cfc1167eeddd1470096985db16aee3e7f",
    ),
    True: (
        "a7f622ea227dda594737eeb2db9a62c03a46f3447a56c9eb5ac2ceed33f6c200",
        "5f6d505b93ddede6c0bec609b174c7849223f1bfa66ddecf869a7865b143f371",
    ),
}
#: the fixed key's fingerprint on the old code: a key without the cap keeps it
FINGERPRINT = "mk1:7eb14217186f41b7"


def _key(foreground: bool) -> EncryptionKey:
    pgd = PGDSettings(eps=0.6, step=0.05, iters=12, precision="fp32", foreground=foreground)
    return EncryptionKey.from_targets(
        CLASSES,
        [(1, 2), (2, 0), (0, 1)],
        combiner="concat",
        seed=5,
        pgd=pgd,
        secret="5e" * 32,
    )


def _release(foreground: bool, make_blobs: Callable[..., Blobs]) -> tuple[str, str]:
    x, y = make_blobs(2, seed=11)
    model = build_model("cnn", len(CLASSES), width=4, seed=3)
    res = Encryptor(model, _key(foreground), device="cpu").encrypt(x, y)
    codes = quantise(res.images, x, eps=0.6)
    return (
        hashlib.sha256(np.ascontiguousarray(res.images, dtype=np.float32).tobytes()).hexdigest(),
        hashlib.sha256(np.ascontiguousarray(codes).tobytes()).hexdigest(),
    )


@pytest.mark.parametrize("foreground", [False, True])
def test_paper_mode_release_is_bit_identical_to_before_the_cap(
    foreground: bool, blob_maker: Callable[..., Blobs]
) -> None:
    assert _release(foreground, blob_maker) == GOLDEN[foreground]


def test_key_without_cap_keeps_its_fingerprint_and_file() -> None:
    key = _key(False)
    assert key.fingerprint == FINGERPRINT
    assert "linf_cap" not in key.to_json()
    capped = EncryptionKey.model_validate(
        {
            **key.model_dump(mode="json"),
            "secret": key.secret.get_secret_value(),
            "pgd": {**key.pgd.model_dump(mode="json"), "linf_cap": 0.05},
        }
    )
    assert capped.fingerprint != FINGERPRINT  # the cap is part of what a key says
