from __future__ import annotations

import numpy as np
import pytest
import torch

from medcrypt.errors import EncryptionKeyError, ImageFormatError
from medcrypt.processing import (
    COMBINERS,
    EncryptionKey,
    Encryptor,
    PGDSettings,
    build_model,
    l2,
    linf,
    predict,
    psnr,
    ssim,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = PGDSettings(eps=1.5, step=0.15, iters=15, precision="fp32")


@pytest.mark.parametrize("combiner", [c for c in COMBINERS if c != "mixup_concat"])
def test_mixed_batch_within_budget_and_reaches_targets(
    classes, trained, blobs_test, combiner
) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner=combiner, seed=5, pgd=FAST)
    enc = Encryptor(trained, key, device="cpu")
    x, y = blobs_test[0][:9], blobs_test[1][:9]
    assert len(set(y.tolist())) == 3  # one call, mixed classes
    res = enc.encrypt(x, y)
    assert res.images.shape == x.shape and res.images.dtype == np.float32
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert (l2(x, res.images) <= FAST.eps).all()
    np.testing.assert_allclose(res.l2, l2(x, res.images))
    np.testing.assert_allclose(res.linf, linf(x, res.images))
    # the batched torch metrics (_metrics_torch) report scikit-image's values (1e-9)
    fg = res.foreground
    for got, want in [
        (res.psnr, psnr(x, res.images)),
        (res.ssim, ssim(x, res.images)),
        (res.psnr_foreground, psnr(x, res.images, fg)),
        (res.ssim_foreground, ssim(x, res.images, fg)),
    ]:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # without record metrics (the archive job's actor): the same release and distances
    bare = enc.encrypt(x, y, metrics=False)
    np.testing.assert_array_equal(bare.images, res.images)
    np.testing.assert_array_equal(bare.l2, res.l2)
    assert bare.psnr is None and bare.ssim_foreground is None
    assert res.targets == [key.targets[c] for c in y]
    # per-target PGD on a model that separates the classes: well above chance (1/3)
    assert res.target_success.mean() >= 0.75, res.target_success
    assert (res.l2 > 0.1).all()


def test_same_key_same_output(classes, trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="concat", seed=5, pgd=FAST)
    a = Encryptor(trained, key, device="cpu").encrypt(blobs_test[0][:3], blobs_test[1][:3])
    b = Encryptor(trained, key, device="cpu").encrypt(blobs_test[0][:3], blobs_test[1][:3])
    np.testing.assert_array_equal(a.images, b.images)


def test_batch_equals_one_by_one(classes, trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="concat", seed=2, pgd=FAST)
    enc = Encryptor(trained, key, device="cpu")
    x, y = blobs_test[0][:4], blobs_test[1][:4]
    batch = enc.encrypt(x, y)
    for i in range(4):
        one = enc.encrypt(x[i : i + 1], y[i : i + 1])
        np.testing.assert_allclose(one.images[0], batch.images[i], atol=1e-5)
        assert one.target_success[0] == batch.target_success[i]


def test_mixup_concat_needs_four_other_classes(blobs_test) -> None:  # type: ignore[no-untyped-def]
    names = ("a", "b", "c", "d", "e")
    model = build_model("vgg11", 5, width=8)
    key = EncryptionKey.generate(names, combiner="mixup_concat", seed=0, pgd=FAST)
    res = Encryptor(model, key, device="cpu").encrypt(blobs_test[0][:5], [0, 1, 2, 3, 4])
    assert all(len(t) == 4 for t in res.targets)
    assert (res.l2 <= FAST.eps).all()


def test_wrong_key_model_pairing_refused(trained) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(["a", "b", "c", "d", "e"], combiner="concat", seed=0)
    with pytest.raises(EncryptionKeyError, match="key has 5 classes, model has 3"):
        Encryptor(trained, key, device="cpu")


def test_bad_inputs_refused(classes, trained) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="concat", seed=0, pgd=FAST)
    enc = Encryptor(trained, key, device="cpu")
    ok = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(EncryptionKeyError, match=r"range\(3\)"):
        enc.encrypt(ok, [0, 3])
    with pytest.raises(ImageFormatError, match=r"\[0, 1\]"):
        enc.encrypt(ok + 2.0, [0, 1])
    with pytest.raises(ImageFormatError, match="float"):
        enc.encrypt(ok.astype(np.uint16), [0, 1])
    with pytest.raises(ImageFormatError, match=r"\(B, H, W\)"):
        enc.encrypt(np.zeros((2, 1, 32, 32), np.float32), [0, 1])


def test_predict_matches_the_model(classes, trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="concat", seed=0, pgd=FAST)
    enc = Encryptor(trained, key, device="cpu")
    got = enc.predict(blobs_test[0])
    np.testing.assert_array_equal(got, predict(trained, blobs_test[0]))
    assert (got == blobs_test[1]).mean() >= 0.9


def test_settings_override_the_key(classes, trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    key = EncryptionKey.generate(classes, combiner="mixup", seed=0, pgd=FAST)
    small = FAST.model_copy(update={"eps": 0.2})
    res = Encryptor(trained, key, device="cpu", settings=small).encrypt(
        blobs_test[0][:3], blobs_test[1][:3]
    )
    assert (res.l2 <= 0.2).all()
    assert torch.get_num_threads() >= 1
