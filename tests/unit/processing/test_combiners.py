from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medcrypt.processing import (
    COMBINERS,
    combine,
    enforce_budget,
    l2,
    quantise,
    random_params,
    validate_combiner,
)
from medcrypt.processing.protection._combiners import default_target_count

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturbed(x: torch.Tensor, k: int, eps: float, gen: torch.Generator) -> torch.Tensor:
    """k per-target outputs, each exactly on the eps-sphere (the worst case PGD can return)."""
    d = torch.randn(x.shape[0], k, *x.shape[1:], generator=gen)
    d = d / d.flatten(2).norm(dim=2)[..., None, None, None] * eps
    return x.unsqueeze(1) + d  # deliberately NOT clamped: the combiner must clamp


@settings(max_examples=40, deadline=None)
@given(
    combiner=st.sampled_from(COMBINERS),
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(0.05, 4.0),
    extra_targets=st.integers(0, 2),
    h=st.integers(8, 40),
    w=st.integers(8, 40),
)
def test_released_image_never_exceeds_budget(
    combiner: str, seed: int, eps: float, extra_targets: int, h: int, w: int
) -> None:
    k = default_target_count(combiner)
    if combiner in ("concat", "mixup"):
        k += extra_targets
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 1, h, w, generator=gen)
    if seed % 3 == 0:
        x = (x > 0.5).float()  # saturated pixels: clamping matters
    params = random_params(combiner, k, rng)
    out = combine(combiner, x, _perturbed(x, k, eps, gen), params, eps=eps)
    dist = (out.double() - x.double()).flatten(1).norm(dim=1)
    assert (dist <= eps).all(), (dist.max().item(), eps)
    assert out.min() >= 0 and out.max() <= 1
    assert out.dtype == torch.float32
    # and still within budget once stored as 16-bit codes
    o = x[:, 0].numpy()
    q = quantise(out[:, 0].numpy(), o, eps=eps)
    assert q.dtype == np.uint16
    assert (l2(o, q.astype(np.float64) / 65535) <= eps).all()


def test_concat_of_two_budget_perturbations_would_exceed_and_is_reprojected() -> None:
    """The case the issue warns about: two halves each using the full budget."""
    x = torch.full((1, 1, 16, 16), 0.5)
    adv = x.unsqueeze(1).repeat(1, 2, 1, 1, 1)
    adv[:, 0, ..., :8] += 0.25  # left half of target-1 output: L2 = 0.25 * sqrt(128) = 2.83
    adv[:, 1, ..., 8:] -= 0.25  # right half of target-2 output: same
    naive = torch.cat([adv[:, 0, ..., :8], adv[:, 1, ..., 8:]], dim=-1)
    assert (naive - x).norm().item() > 2.0 * 1.9  # ~4.0 without re-projection
    out = combine("concat", x, adv, (0.5,), eps=2.0)
    assert (out.double() - x.double()).norm().item() <= 2.0
    # structure kept: left brighter, right darker, by the same scaled amount
    assert (out[..., :8] > 0.5).all() and (out[..., 8:] < 0.5).all()


def test_concat_takes_strips_from_each_target_in_order() -> None:
    x = torch.zeros(2, 1, 4, 10)
    adv = torch.stack([torch.full_like(x, 0.01 * (i + 1)) for i in range(3)], dim=1)
    out = combine("concat", x, adv, (0.3, 0.6), eps=100.0)
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.01] * 3 + [0.02] * 3 + [0.03] * 4))


def test_mixup_and_mixup_concat_weights() -> None:
    x = torch.zeros(1, 1, 2, 4)
    adv = torch.stack([torch.full_like(x, v) for v in (0.1, 0.2, 0.3, 0.4)], dim=1)
    mix = combine("mixup", x, adv[:, :2], (0.25, 0.75), eps=100.0)
    assert torch.allclose(mix, torch.full_like(x, 0.175))
    mc = combine("mixup_concat", x, adv, (0.5, 0.25, 0.5), eps=100.0)
    assert torch.allclose(mc[0, 0, 0], torch.tensor([0.15, 0.15, 0.375, 0.375]))


def test_cutmix_pastes_box_of_second_output() -> None:
    x = torch.zeros(1, 1, 10, 10)
    adv = torch.stack([torch.full_like(x, 0.1), torch.full_like(x, 0.2)], dim=1)
    out = combine("cutmix", x, adv, (0.2, 0.3, 0.5, 0.4), eps=100.0)
    box = torch.zeros(10, 10, dtype=torch.bool)
    box[2:7, 3:7] = True
    assert torch.allclose(out[0, 0][box], torch.tensor(0.2))
    assert torch.allclose(out[0, 0][~box], torch.tensor(0.1))


@pytest.mark.parametrize(
    ("combiner", "k", "params", "message"),
    [
        ("concat", 2, (0.5, 0.6), "targets-1 split fractions"),
        ("concat", 3, (0.6, 0.4), "must increase"),
        ("mixup", 2, (0.5, 0.6), "sum to 1"),
        ("mixup_concat", 2, (0.5, 0.5, 0.5), "4 targets"),
        ("cutmix", 2, (0.8, 0.0, 0.5, 0.5), "inside the image"),
        ("none", 2, (), "1 target"),
        ("swirl", 2, (), "unknown combiner"),
    ],
)
def test_invalid_parameters_refused(
    combiner: str, k: int, params: tuple[float, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_combiner(combiner, k, params)


def test_enforce_budget_holds_in_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 64, 64, generator=gen)
    y = x + torch.randn(8, 1, 64, 64, generator=gen)
    out = enforce_budget(x, y, 0.3)
    assert ((out.double() - x.double()).flatten(1).norm(dim=1) <= 0.3).all()
