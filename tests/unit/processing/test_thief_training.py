"""Issue 23: victims as a thief trains them (standard augmentation, one-cycle, mixup, the
DenseNet-121 family) and the robust (REM / SEM-style) min-min lever."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcrypt.processing import MinMinSettings, PGDSettings, craft_surrogate, foreground_masks
from medcrypt.processing.assessment._victims import THIEF_FAMILIES, fit_victim, thief_settings
from medcrypt.processing.models._nets import ARCHITECTURES, build_model
from medcrypt.processing.models._training import TrainSettings, train_model
from medcrypt.processing.models._views import random_views
from medcrypt.processing.protection._robust import adversarial_rho, random_rho

pytestmark = pytest.mark.usefixtures("one_thread")


def test_views_are_identity_when_off_and_seeded_when_on() -> None:
    x = torch.rand(6, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    assert random_views(x, flip=False, rotate=0, crop_scale=1.0, generator=gen) is x
    a = random_views(x, flip=True, rotate=10, crop_scale=0.8, generator=gen.manual_seed(1))
    b = random_views(x, flip=True, rotate=10, crop_scale=0.8, generator=gen.manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.allclose(a, x)


def test_flip_alone_mirrors_rows() -> None:
    x = torch.rand(64, 1, 8, 8)
    out = random_views(x, flip=True, rotate=0, crop_scale=1.0, generator=torch.Generator())
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 10 < int(mirrored.sum()) < 54


def test_crop_zooms_in() -> None:
    # a centred bright square grows in a crop of a quarter of the area (a 2x zoom)
    x = torch.zeros(8, 1, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0
    out = random_views(x, flip=False, rotate=0, crop_scale=0.25, generator=torch.Generator())
    assert float(out.sum()) > float(x.sum()) * 1.2


def test_thief_settings_train_and_are_deterministic(blobs, blobs_test) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs
    cfg = thief_settings(6, mixup=0.2).model_copy(update={"batch_size": 16, "lr": 5e-3})
    assert cfg.schedule == "onecycle" and cfg.flip and cfg.rotate > 0 and cfg.crop_scale < 1
    runs = [
        fit_victim("cnn", x, y, {"t": blobs_test}, n_classes=3, width=8, settings=cfg, seed=3)[0]
        for _ in range(2)
    ]
    assert runs[0].scores["t"].balanced == runs[1].scores["t"].balanced
    assert runs[0].scores["t"].bacc_peak > 0.6  # learns through the augmentation


def test_defaults_leave_training_unchanged(blobs) -> None:  # type: ignore[no-untyped-def]
    # every new option off: the same weights as the plain loop (older records stay valid)
    x, y = blobs
    a, b = build_model("cnn", 3, width=4), build_model("cnn", 3, width=4)
    ha = train_model(a, x, y, seed=0, settings=TrainSettings(epochs=1, shift=2))
    hb = train_model(
        b, x, y, seed=0, settings=TrainSettings(epochs=1, shift=2, flip=False, mixup=0.0)
    )
    assert ha[0].train_loss == hb[0].train_loss
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)


def test_densenet121_is_a_family_at_standard_layout() -> None:
    assert "densenet121" in ARCHITECTURES and set(THIEF_FAMILIES) <= set(ARCHITECTURES)
    model = build_model("densenet121", 3, width=8)
    dense = [m for m in model.modules() if type(m).__name__ == "_DenseLayer"]
    assert len(dense) == 6 + 12 + 24 + 16  # DenseNet-121's 58 dense layers
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 64, 64)).shape == (2, 3)


def test_rho_has_the_radius_on_the_mask() -> None:
    x = torch.rand(4, 1, 16, 16)
    mask = torch.zeros_like(x)
    mask[..., 4:12, 4:12] = 1
    rho = random_rho(x, 0.3, mask, torch.Generator().manual_seed(0))
    assert torch.allclose(rho.flatten(1).norm(dim=1), torch.full((4,), 0.3), atol=1e-5)
    assert float(rho[mask == 0].abs().max()) == 0.0
    model = build_model("cnn", 3, width=4).eval()
    y = torch.tensor([0, 1, 2, 0])
    adv = adversarial_rho([model], x, y, 0.3, mask, steps=3, generator=torch.Generator())
    assert float(adv.flatten(1).norm(dim=1).max()) <= 0.3 + 1e-5
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(model(x + adv), y) > ce(model(x + rho), y)  # an ascent, not a draw


@pytest.mark.parametrize("steps", [0, 2])
def test_robust_min_min_runs_and_differs_from_plain(blobs, steps: int) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs
    pgd = PGDSettings(mode="unlearnable", eps=1.0, step=0.2, iters=4, precision="fp32")
    kw = {"width": 4, "train_steps": 4, "noise_steps": 2, "batch_size": 32, "max_rounds": 2}
    runs = [
        craft_surrogate(
            x,
            y,
            n_classes=3,
            settings=pgd,
            minmin=MinMinSettings(**kw, robust=r, robust_steps=steps),  # type: ignore[arg-type]
            masks=foreground_masks(x),
            seed=0,
        )
        for r in (0.0, 0.5)
    ]
    assert not np.array_equal(runs[0].deltas, runs[1].deltas)
    norms = np.sqrt((runs[1].deltas.astype(np.float64) ** 2).reshape(len(x), -1).sum(1))
    assert norms.max() <= 1.0 + 1e-4  # the release's own budget holds; rho is not released


def test_nt_xent_rewards_matching_pairs() -> None:
    from medcrypt.processing.assessment._ssl import nt_xent

    z = torch.randn(8, 16)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16), 0.5) < nt_xent(z, torch.randn(8, 16), 0.5)


def test_contrastive_thief_probes_above_chance(blobs, blobs_test) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing.assessment._ssl import contrastive_probe

    x, y = blobs
    out = contrastive_probe(
        x, y, {"t": blobs_test}, n_classes=3, arch="cnn", width=4, epochs=3, batch_size=32
    )
    assert set(out) == {"pretrain", "t"} and np.isfinite(out["pretrain"]["loss"])
    assert out["t"]["bacc"] > 0.5  # blobs are separable from unsupervised features
