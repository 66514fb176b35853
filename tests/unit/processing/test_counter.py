"""Counter-attack audit: the transforms are the ones named, and the audit trains what it says."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.filters import gaussian
from torch import nn

from medcrypt.errors import ConfigError
from medcrypt.processing import TrainSettings, build_model, train_model
from medcrypt.processing.assessment._counter import (
    CounterAttack,
    adversarial_hook,
    apply_counter_attack,
    audit_counter_attacks,
    down_up,
    gaussian_blur,
    gaussian_noise,
    jpeg_round_trip,
    mix_clean,
)
from medcrypt.processing.assessment._victims import balanced_accuracy, score_predictions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    smooth = 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    return np.clip(smooth + rng.normal(0, 0.05, (3, 32, 32)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("quality", [10, 30, 75])
def test_jpeg_round_trip_is_pillows(images: np.ndarray, quality: int) -> None:
    out = jpeg_round_trip(images, quality)
    for img, got in zip(images, out, strict=True):
        u8 = (np.clip(np.round(img * 255), 0, 255)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, "JPEG", quality=quality)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
        np.testing.assert_array_equal(got, expected)
    assert out.dtype == np.float32 and out.shape == images.shape


def test_lower_jpeg_quality_changes_more(images: np.ndarray) -> None:
    err = {q: np.abs(jpeg_round_trip(images, q) - images).mean() for q in (10, 30, 75)}
    assert err[10] > err[30] > err[75] > 0


def test_jpeg_refuses_a_bad_quality(images: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="quality"):
        jpeg_round_trip(images, 0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_is_skimages_gaussian(images: np.ndarray, sigma: float) -> None:
    out = gaussian_blur(images, sigma)
    for img, got in zip(images, out, strict=True):
        expected = gaussian(img.astype(np.float64), sigma=sigma, mode="reflect", truncate=4.0)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(np.diff(out, axis=2)).mean() < np.abs(np.diff(images, axis=2)).mean()


def test_noise_is_seeded_gaussian_and_clipped() -> None:
    flat = np.full((4, 32, 32), 0.5, dtype=np.float32)
    a, b = gaussian_noise(flat, 0.05, seed=3), gaussian_noise(flat, 0.05, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, gaussian_noise(flat, 0.05, seed=4))
    assert abs(float((a - 0.5).std()) - 0.05) < 0.003 and abs(float((a - 0.5).mean())) < 0.003
    edge = gaussian_noise(np.ones((2, 8, 8), dtype=np.float32), 0.3, seed=0)
    assert edge.max() == 1.0 and edge.min() >= 0.0


def test_down_up_keeps_the_shape_and_averages_2x2_blocks() -> None:
    yy, xx = np.mgrid[:16, :16]
    checker = ((yy + xx) % 2).astype(np.float32)[None]  # the finest pattern: each 2x2 mean 0.5
    np.testing.assert_allclose(down_up(checker), 0.5, atol=1e-7)
    const = np.full((2, 16, 16), 0.3, dtype=np.float32)
    np.testing.assert_allclose(down_up(const), 0.3, atol=1e-7)
    blocks = np.kron(np.arange(64, dtype=np.float32).reshape(8, 8) / 64, np.ones((2, 2)))[None]
    out = down_up(blocks.astype(np.float32))
    assert out.shape == blocks.shape
    # bilinear up-sampling puts each block mean at the block centre: interior pixels sit a
    # quarter block from it, so they interpolate between neighbouring means
    torch_up = nn.functional.interpolate(
        torch.from_numpy(blocks[:, ::2, ::2].copy()).unsqueeze(1),
        scale_factor=2,
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    np.testing.assert_allclose(out, torch_up.numpy(), atol=1e-7)
    with pytest.raises(ConfigError, match="factor"):
        down_up(np.zeros((1, 15, 16), dtype=np.float32))


def test_mix_clean_replaces_exactly_the_share() -> None:
    released = np.zeros((50, 4, 4), dtype=np.float32)
    clean = np.ones((50, 4, 4), dtype=np.float32)
    mixed, idx = mix_clean(released, clean, 0.2, seed=0)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10
    assert (mixed[idx] == 1).all() and (np.delete(mixed, idx, axis=0) == 0).all()
    with pytest.raises(ConfigError, match="clean originals"):
        apply_counter_attack(CounterAttack(name="m", kind="mix_clean", value=0.2), released)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_adversarial_hook_stays_in_budget_and_raises_the_loss(
    blobs: tuple[np.ndarray, np.ndarray], trained: nn.Module, norm: str
) -> None:
    x = torch.from_numpy(blobs[0][:12]).unsqueeze(1)
    y = torch.from_numpy(blobs[1][:12])
    eps = 1.0 if norm == "l2" else 0.03
    trained.train()
    adv = adversarial_hook(eps, norm=norm, steps=3)(trained, x, y)  # type: ignore[arg-type]
    assert trained.training  # left as found
    d = (adv - x).flatten(1)
    size = d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)
    assert float(size.max()) <= eps * (1 + 1e-5)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    trained.eval()
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        assert float(loss(trained(adv), y)) > float(loss(trained(x), y))


def test_batch_hook_sees_every_training_batch(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    seen: list[int] = []

    def hook(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        assert model.training and xb.shape[0] == yb.shape[0]
        seen.append(xb.shape[0])
        return torch.zeros_like(xb)  # the model only ever sees blank images

    model = build_model("vgg11", 3, width=4, seed=0)
    train_model(
        model, *blobs, seed=0, settings=TrainSettings(epochs=2, batch_size=30), batch_hook=hook
    )
    assert sum(seen) == 2 * len(blobs[0])
    with torch.no_grad():
        preds = model(torch.from_numpy(blobs[0]).unsqueeze(1)).argmax(1)
    assert len(set(preds.tolist())) == 1  # blank inputs teach nothing about the blobs


def test_balanced_accuracy_is_mean_recall() -> None:
    from sklearn.metrics import balanced_accuracy_score

    truth = np.array([0] * 8 + [1] * 2)
    always_zero = np.zeros(10, dtype=np.int64)
    assert score_predictions(truth, always_zero) == (0.8, 0.5)
    assert balanced_accuracy(truth, truth) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(5):
        t, p = rng.integers(0, 3, 40), rng.integers(0, 4, 40)
        assert balanced_accuracy(t, p) == pytest.approx(balanced_accuracy_score(t, p))


def test_audit_trains_a_victim_per_attack_and_arch(
    blobs: tuple[np.ndarray, np.ndarray], blobs_test: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = blobs
    attacks = [
        CounterAttack(name="none", kind="none"),
        CounterAttack(name="jpeg10", kind="jpeg", value=10),
        CounterAttack(name="mix", kind="mix_clean", value=0.2),
    ]
    audit = audit_counter_attacks(
        x,
        y,
        *blobs_test,
        eps=0.5,
        clean=x,
        attacks=attacks,
        archs=("vgg11",),
        width=4,
        train=TrainSettings(epochs=2, batch_size=16),
    )
    assert [r.attack.name for r in audit.rows] == ["none", "jpeg10", "mix"]
    assert len(audit.clean) == 1 and audit.clean[0].arch == "vgg11"
    none, _, mix = (r.victims[0].scores["original_test"] for r in audit.rows)
    # released == clean here, so mixing clean images in changes nothing, and the "none"
    # victim is the clean baseline (same seed, same data)
    assert none.accuracy == mix.accuracy == audit.clean[0].scores["original_test"].accuracy
    assert len(none.accuracy) == 2 and none.acc_peak >= none.acc_final
    md = audit.to_markdown()
    assert "jpeg10" in md and "clean-trained baseline" in md
