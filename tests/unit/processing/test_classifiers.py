from __future__ import annotations

import numpy as np
import pytest
import torch

from medcrypt.errors import ModelError
from medcrypt.processing import (
    ARCHITECTURES,
    Normalisation,
    TrainSettings,
    build_model,
    evaluate_accuracy,
    predict,
    state_dict_hash,
    train_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(32, 32), (24, 40), (64, 64)])
def test_any_input_size_gives_logits(arch: str, shape: tuple[int, int]) -> None:
    model = build_model(arch, 5, width=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *shape))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_width_scales_parameters() -> None:
    small = sum(p.numel() for p in build_model("resnet18", 5, width=8).parameters())
    big = sum(p.numel() for p in build_model("resnet18", 5, width=16).parameters())
    assert 3.5 < big / small < 4.5  # conv weights grow with width squared


def test_unknown_arch_and_bad_sizes_refused() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'alexnet'"):
        build_model("alexnet", 3)
    with pytest.raises(ModelError, match="num_classes >= 2"):
        build_model("resnet18", 1)


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = build_model("vgg11", 3, width=8, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    b = build_model("vgg11", 3, width=8, seed=1)
    c = build_model("vgg11", 3, width=8, seed=2)
    assert state_dict_hash(a.state_dict()) == state_dict_hash(b.state_dict())
    assert state_dict_hash(a.state_dict()) != state_dict_hash(c.state_dict())


def test_normalisation_is_applied_inside_the_model() -> None:
    model = build_model("vgg11", 3, width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        base = model(x)
        model.set_normalisation(Normalisation(mean=(0.5,), std=(2.0,)))
        shifted = model(x * 2.0 + 0.5)
    assert torch.allclose(base, shifted, atol=1e-5)
    with pytest.raises(ModelError, match="std must be positive"):
        model.set_normalisation(Normalisation(mean=(0.0,), std=(0.0,)))


def test_training_learns_and_records_history(blobs, blobs_test) -> None:  # type: ignore[no-untyped-def]
    model = build_model("vgg11", 3, width=8, seed=0)
    calls: list[tuple[int, int | None, str]] = []
    seen_modes: list[bool] = []

    def on_epoch(epoch: int, m: torch.nn.Module) -> dict[str, float]:
        seen_modes.append(m.training)
        return {"test_acc": evaluate_accuracy(m, *blobs_test)}

    history = train_model(
        model,
        *blobs,
        seed=0,
        settings=TrainSettings(epochs=4, batch_size=16, lr=3e-3),
        val_images=blobs_test[0],
        val_labels=blobs_test[1],
        progress=lambda d, t, w: calls.append((d, t, w)),
        on_epoch=on_epoch,
    )
    assert [r.epoch for r in history] == [1, 2, 3, 4]
    assert calls[-1] == (4, 4, "epoch 4/4")
    assert seen_modes == [False] * 4
    assert all("test_acc" in r.metrics for r in history)
    assert history[-1].metrics["test_acc"] == history[-1].val_accuracy
    # 3 classes: chance is 1/3
    assert history[-1].val_accuracy is not None and history[-1].val_accuracy >= 0.9
    assert not model.training
    mean = float(blobs[0].mean())
    assert model.normalisation.mean[0] == pytest.approx(mean, abs=1e-4)
    assert predict(model, blobs_test[0]).dtype == np.int64


def test_training_is_deterministic_by_seed(blobs) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs[0][:36], blobs[1][:36]
    settings = TrainSettings(epochs=2, batch_size=8, shift=2)
    hashes = []
    for seed in (3, 3, 4):
        model = build_model("vgg11", 3, width=8, seed=0)  # dropout + shift: both seeded
        train_model(model, x, y, seed=seed, settings=settings)
        hashes.append(state_dict_hash(model.state_dict()))
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_training_rejects_mismatched_labels(blobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="expected 90 labels"):
        train_model(build_model("vgg11", 3, width=8), blobs[0], blobs[1][:5], seed=0)
