"""Mode ``unlearnable`` (issue 19): the min-min surrogate, per-case error-minimizing noise,
the key that maps every class to itself and names its surrogate, orthogonal projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing import (
    EncryptionKey,
    Encryptor,
    MinMinSettings,
    PGDSettings,
    craft_surrogate,
    foreground_masks,
    orthogonal_projection,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _settings(**kw: object) -> PGDSettings:
    return PGDSettings.model_validate(
        {"mode": "unlearnable", "eps": 1.0, "step": 0.2, "iters": 8, "precision": "fp32"} | kw
    )


@pytest.fixture(scope="module")
def crafted(blobs):  # type: ignore[no-untyped-def]
    x, y = blobs
    # the loop's own step: 0.2, as the key's (the loop no longer takes the key's step)
    mm = MinMinSettings(
        width=4, train_steps=10, noise_steps=4, noise_step=0.2, batch_size=32, max_rounds=4
    )
    res = craft_surrogate(
        x, y, n_classes=3, settings=_settings(), minmin=mm, masks=foreground_masks(x), seed=0
    )
    return x, y, res


def test_unlearnable_settings_defaults() -> None:
    s = PGDSettings(mode="unlearnable")
    assert (s.restarts, s.augment, s.iters) == (1, 1.0, 20)
    assert s.step == pytest.approx(2.5 * s.eps / 20)  # can cross the ball 2.5 times
    assert PGDSettings(mode="unlearnable", eps=1.0, iters=10).step == pytest.approx(0.25)
    assert PGDSettings(mode="unlearnable", step=0.3).step == 0.3
    assert PGDSettings(mode="paper").step == 0.1  # other modes keep theirs
    assert s.crafted
    assert PGDSettings(mode="unlearnable", iters=5, augment=0.0).iters == 5


def test_key_maps_every_class_to_itself(classes) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="none", seed=1, pgd=_settings())
    assert key.targets == tuple((i,) for i in range(len(classes)))
    assert key.combiner == "none" and key.allow_fixed_points
    with pytest.raises(EncryptionKeyError, match="maps every class to itself"):
        EncryptionKey.generate(classes, combiner="concat", seed=1, pgd=_settings())
    with pytest.raises(EncryptionKeyError, match="maps every class to itself"):
        EncryptionKey.from_targets(
            classes, [(1,), (1,), (2,)], combiner="none", seed=1, allow_fixed_points=True,
            pgd=_settings(),
        )  # fmt: skip


def test_surrogate_named_in_key_and_checked(classes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="none", seed=1, pgd=_settings())
    before = key.fingerprint
    assert "surrogate" not in key.to_json()  # no field, no change to older files
    named = key.with_surrogate(["sha256:aa"])
    assert named.surrogate == ("sha256:aa",)
    assert named.secret.get_secret_value() == key.secret.get_secret_value()
    assert named.fingerprint != before  # the surrogate is part of what the key says
    again = EncryptionKey.load(named.save(tmp_path / "k.json"))
    assert again.fingerprint == named.fingerprint
    named.check_surrogate(["sha256:aa"])
    with pytest.raises(EncryptionKeyError, match="names no surrogate: run 'medcrypt craft"):
        key.check_surrogate(["sha256:anything"])
    with pytest.raises(EncryptionKeyError, match="crafted with surrogate"):
        named.check_surrogate(["sha256:bb"])
    paper = EncryptionKey.generate(classes, combiner="concat", seed=1)
    paper.check_surrogate(["sha256:anything"])  # other modes: any crafting model
    with pytest.raises(EncryptionKeyError, match="only a mode 'unlearnable' key"):
        paper.with_surrogate(["sha256:aa"])


def test_min_min_fits_its_own_noise(crafted) -> None:  # type: ignore[no-untyped-def]
    x, _, res = crafted
    assert 1 <= res.rounds <= 4 and len(res.accuracy) == res.rounds
    assert res.accuracy[-1] >= 0.9  # the surrogate learns the perturbed sample
    assert res.deltas.shape == x.shape
    norms = np.sqrt((res.deltas.astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1))
    assert norms.max() <= 1.0 + 1e-5 and norms.mean() > 0.2  # within eps, and spent
    off = ~foreground_masks(x)
    assert np.abs(res.deltas[off]).max() == 0.0  # nothing outside the anatomy


def test_per_case_noise_lowers_own_label_loss(crafted, classes, blobs_test) -> None:  # type: ignore[no-untyped-def]
    _, _, res = crafted
    xt, yt = blobs_test
    key = EncryptionKey.generate(classes, combiner="none", seed=1, pgd=_settings())
    enc = Encryptor(res.models[0], key, device="cpu")
    out = enc.encrypt(xt, yt)
    assert (out.l2 <= 1.0 + 1e-5).all() and out.l2.mean() > 0.2
    assert out.targets == [(int(c),) for c in yt]
    model = res.models[0].eval()

    def loss(images: np.ndarray) -> float:
        with torch.no_grad():
            logits = model(torch.as_tensor(images).unsqueeze(1))
        return float(nn.functional.cross_entropy(logits, torch.as_tensor(yt)))

    assert loss(out.images) < 0.7 * loss(xt)  # error-minimizing: easier for its own label
    assert np.array_equal(out.images[~out.foreground], xt[~out.foreground])


def test_craft_surrogate_refuses_a_sample_missing_a_class(blobs) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.errors import ModelError

    x, y = blobs
    keep = y != 2
    with pytest.raises(ModelError, match=r"no image of class\(es\) \[2\]"):
        craft_surrogate(x[keep], y[keep], n_classes=3, settings=_settings())


def test_orthogonal_projection_removes_a_linear_class_pattern() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, side = 120, 8
    y = np.arange(n) % 3
    base = rng.uniform(0.2, 0.8, size=(n, side, side)).astype(np.float32)
    patterns = rng.normal(0, 0.2, size=(3, side, side)).astype(np.float32)
    poisoned = base + patterns[y]  # a class-wise shortcut: linearly separable

    def probe(x: np.ndarray) -> float:
        flat = x.reshape(n, -1)
        return float(LogisticRegression(max_iter=500).fit(flat, y).score(flat, y))

    assert probe(poisoned) == 1.0
    projected = orthogonal_projection(poisoned, y, n_classes=3)
    assert projected.shape == poisoned.shape
    # the shortcut's span is gone: the class patterns no longer show in the class means
    means = np.stack([projected[y == c].mean(axis=0) for c in range(3)])
    spread_before = np.stack([poisoned[y == c].mean(axis=0) for c in range(3)]).std(axis=0)
    assert means.std(axis=0).mean() < 0.5 * spread_before.mean()


def test_no_new_black_pixels_in_dark_anatomy(crafted, classes, blobs_test) -> None:  # type: ignore[no-untyped-def]
    """Blinding: the release has no more exactly-black pixels (16 or 8 bits) than the original,
    even where the anatomy is nearly black."""
    _, _, res = crafted
    xt, yt = blobs_test
    x = np.where(xt > 0.3, xt, 0.0).astype(np.float32)
    dark = (x > 0) & (np.random.default_rng(0).random(x.shape) < 0.3)
    x = np.where(dark, np.float32(2 / 255), x)  # dark tissue inside the anatomy
    key = EncryptionKey.generate(classes, combiner="none", seed=1, pgd=_settings(eps=2.0))
    out = Encryptor(res.models[0], key, device="cpu").encrypt(x, yt)
    assert (np.abs(out.images - x)[dark] > 0).mean() > 0.3  # the dark pixels were perturbed
    assert ((out.images == 0).sum(axis=(1, 2)) == (x == 0).sum(axis=(1, 2))).all()
    eight = lambda a: (np.rint(a * 255) == 0).sum(axis=(1, 2))  # noqa: E731
    assert (eight(out.images) <= eight(x)).all()
    assert (out.l2 <= 2.0 + 1e-5).all()
