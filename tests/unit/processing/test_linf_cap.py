"""The per-pixel cap beside the L2 budget (issue 23): every mode's projection keeps both, and
quantisation to 16 or 8 bits keeps both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcrypt.processing import (
    MODES,
    EncryptionKey,
    Encryptor,
    PGDSettings,
    build_model,
    default_linf_cap,
    quantise,
)
from medcrypt.processing.protection._foreground import apply_budget, project
from medcrypt.processing.protection._pgd import enforce_budget, project_l2
from medcrypt.processing.protection._release import settings_from_key

pytestmark = pytest.mark.usefixtures("one_thread")

EPS, CAP = 1.0, 0.03


def test_projections_keep_both_the_ball_and_the_box() -> None:
    gen = torch.Generator().manual_seed(0)
    # rows whose energy sits in a few pixels (L2 noise concentrates) and spread-out rows
    spiky = torch.zeros(4, 1, 16, 16)
    spiky[:, 0, 3, 3] = torch.tensor([0.9, -0.5, 0.2, 0.05])
    d = torch.cat([spiky, torch.randn(4, 1, 16, 16, generator=gen) * 0.2])
    for out in (project_l2(d, EPS, CAP), project(d, EPS, "l2", None, CAP)):
        assert float(out.abs().max()) <= CAP
        assert float(out.flatten(1).norm(dim=1).max()) <= EPS * (1 + 1e-6)
    assert float(project(d, EPS, "linf", None, CAP).abs().max()) <= CAP
    assert float(project(d, 0.01, "linf", None, CAP).abs().max()) <= 0.01
    # without a cap nothing changes: the paper's projection
    assert torch.equal(project_l2(d, EPS), project_l2(d, EPS, None))
    x0 = torch.rand(8, 1, 16, 16, generator=gen)
    for out in (
        enforce_budget(x0, x0 + d, EPS, CAP),
        apply_budget(x0, x0 + d, EPS, norm="l2", cap=CAP),
        apply_budget(x0, x0 + d, EPS, norm="l2", mask=(x0 > 0.3).float(), cap=CAP),
    ):
        change = out.double() - x0.double()
        assert float(change.abs().max()) <= CAP
        assert float(change.flatten(1).norm(dim=1).max()) <= EPS
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_releases_within_both(mode: str, blobs, classes) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs[0][:6], blobs[1][:6]
    extra = {} if mode in ("paper", "unlearnable") else {"restarts": 1}
    pgd = PGDSettings.model_validate(
        {"mode": mode, "eps": EPS, "step": 0.3, "iters": 4, "precision": "fp32", **extra}
    )
    model = build_model("cnn", len(classes), width=4, seed=0)
    combiner = "none" if mode == "unlearnable" else "concat"
    free = Encryptor(
        model, EncryptionKey.generate(classes, combiner=combiner, seed=2, pgd=pgd), device="cpu"
    ).encrypt(x, y)
    assert float(free.linf.max()) > CAP  # the cap binds on this case
    capped_pgd = pgd.model_copy(update={"linf_cap": CAP})
    key = EncryptionKey.generate(classes, combiner=combiner, seed=2, pgd=capped_pgd)
    res = Encryptor(model, key, device="cpu").encrypt(x, y)
    assert float(res.linf.max()) <= CAP
    assert float(res.l2.max()) <= EPS
    assert float(res.l2.min()) > 0.0
    # and after quantisation, 16 and 8 bits alike
    for levels in (65535, 255):
        q = quantise(res.images, x, eps=EPS, levels=levels, linf_cap=CAP)
        diff = q.astype(np.float64) / levels - x.astype(np.float64)
        assert np.abs(diff).max() <= CAP
        assert np.sqrt((diff**2).reshape(len(x), -1).sum(axis=1)).max() <= EPS


@pytest.mark.parametrize("levels", [65535, 255])
def test_quantise_pulls_half_a_level_back_under_the_cap(levels: int) -> None:
    rng = np.random.default_rng(1)
    o = rng.uniform(0.2, 0.8, (3, 24, 24))
    # every pixel exactly at the cap: plain rounding moves about half of them over it
    p = o + CAP * rng.choice([-1.0, 1.0], o.shape)
    naive = np.rint(p * levels) / levels - o
    assert np.abs(naive).max() > CAP
    q = quantise(p, o, eps=10.0, levels=levels, linf_cap=CAP)
    diff = q.astype(np.float64) / levels - o
    assert np.abs(diff).max() <= CAP
    assert np.abs(diff).max() >= CAP - 1.0 / levels  # pulled back by one code, no more
    # with an L2 budget that binds too, both hold
    eps = 0.5 * float(np.sqrt((naive[0] ** 2).sum()))
    q2 = quantise(p, o, eps=eps, levels=levels, linf_cap=CAP)
    d2 = q2.astype(np.float64) / levels - o
    assert np.abs(d2).max() <= CAP
    assert np.sqrt((d2**2).reshape(3, -1).sum(axis=1)).max() <= eps


def test_cap_is_left_out_of_dumps_when_unset_and_a_job_can_repeat_it() -> None:
    assert "linf_cap" not in PGDSettings().model_dump()
    assert "linf_cap" not in PGDSettings(mode="unlearnable").model_dump_json()
    assert PGDSettings(linf_cap=0.05).model_dump()["linf_cap"] == 0.05
    assert default_linf_cap("unlearnable") is not None and default_linf_cap("paper") is None
    with pytest.raises(ValueError):
        PGDSettings(linf_cap=0.0)
    capped = PGDSettings(mode="unlearnable", linf_cap=0.05)
    assert settings_from_key(capped, {"linf_cap": 0.05})[0].linf_cap == 0.05
    assert settings_from_key(PGDSettings(), {"linf_cap": None})[0].linf_cap is None
    with pytest.raises(Exception, match="linf_cap"):
        settings_from_key(PGDSettings(), {"linf_cap": 0.05})
