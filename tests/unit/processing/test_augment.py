"""The crafting augmentation: differentiable, identity at zero strength, really random."""

from __future__ import annotations

import pytest
import torch

from medcrypt.processing import augment, draw_augmentation


def test_identity_at_zero_strength() -> None:
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert augment(x, None) is x  # what crafting uses when augment == 0
    draw = draw_augmentation(4, 0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(draw.theta, torch.eye(2, 3).expand(4, 2, 3))
    torch.testing.assert_close(draw.gain, torch.ones(4))
    torch.testing.assert_close(augment(x, draw), x, atol=1e-5, rtol=0)


def test_differentiable_and_not_the_identity() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 12, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    draw = draw_augmentation(3, 1.0, generator=gen)
    draw64 = type(draw)(theta=draw.theta.double(), gain=draw.gain.double())
    assert torch.autograd.gradcheck(lambda v: augment(v, draw64), (x,))
    y = augment(x, draw64)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.abs().sum() > 0
    assert (y - x).abs().max() > 0.05  # a real transformation at full strength


def test_strength_bounds_the_draw() -> None:
    gen = torch.Generator().manual_seed(3)
    d = draw_augmentation(500, 0.5, generator=gen)
    assert ((d.gain - 1).abs() <= 0.05 + 1e-6).all()
    assert (d.theta[:, :, 2].abs() <= 0.0625 + 1e-6).all()  # 1/16 of the side, halved
    assert (d.theta[:, 0, 0] < 0).any() and (d.theta[:, 0, 0] > 0).any()  # flips drawn
    with pytest.raises(ValueError, match="strength"):
        draw_augmentation(2, 1.5)
