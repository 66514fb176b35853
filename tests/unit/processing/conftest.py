"""Fixtures for processing tests: tiny synthetic slices and one tiny trained model.

The synthetic set has 3 classes told apart by where a bright blob sits (a stand-in for the
phantoms' tumour locations), 32x32 px, so a width-8 network learns it in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from medcrypt.processing import TrainSettings, build_model, train_model

CLASSES = ("left", "right", "bottom")


@pytest.fixture(scope="session")
def classes() -> tuple[str, ...]:
    return CLASSES


_CENTRES = ((9, 9), (9, 23), (23, 16))


def make_blobs(n_per_class: int, *, size: int = 32, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) float32 in [0, 1] and int64 labels, classes interleaved."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    scale = size / 32
    for _ in range(n_per_class):
        for c, (cy, cx) in enumerate(_CENTRES):
            img = rng.uniform(0.0, 0.25, (size, size))
            jy, jx = rng.integers(-2, 3, 2)
            r2 = (yy - (cy + jy) * scale) ** 2 + (xx - (cx + jx) * scale) ** 2
            img += rng.uniform(0.5, 0.7) * np.exp(-r2 / (18 * scale**2))
            images.append(np.clip(img, 0.0, 1.0))
            labels.append(c)
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)


@pytest.fixture(scope="session")
def blob_maker() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`make_blobs` itself, for tests that need their own fixed draw."""
    return make_blobs


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # Opt-in per module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on 2 shared
    # cores, intra-op threads fighting other processes make tiny convolutions ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(30, seed=0)


@pytest.fixture(scope="session")
def blobs_test() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(10, seed=1)


@pytest.fixture(scope="session")
def trained(blobs: tuple[np.ndarray, np.ndarray]) -> torch.nn.Module:
    """A width-8 ResNet-18 trained on the blobs (the shared base model of these tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model("resnet18", len(CLASSES), width=8, seed=0)
        train_model(model, *blobs, seed=0, settings=TrainSettings(epochs=5, batch_size=16, lr=3e-3))
    finally:
        torch.set_num_threads(before)
    return model
