"""The min-min loop's own step does not depend on the per-case iterations (issue 23).

``keygen --iters 100`` shrinks the per-case step to 2.5 * eps / 100; when the loop took that
step too, ``craft`` stopped at its round limit with the surrogate at 92%, not 99%. The loop
now keeps the default mode's step (2.5 * eps / 20) unless given its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from medcrypt.medical import make_phantom_slices
from medcrypt.processing import MinMinSettings, PGDSettings, craft_surrogate, foreground_masks

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1.0


def _craft(iters: int, noise_step: float | None = None):  # type: ignore[no-untyped-def]
    x, y = make_phantom_slices(8, size=32, seed=0)
    settings = PGDSettings(mode="unlearnable", eps=EPS, iters=iters, precision="fp32")
    mm = MinMinSettings(
        width=8, train_steps=10, noise_steps=10, batch_size=32, max_rounds=6, noise_step=noise_step
    )
    return craft_surrogate(
        x, y, n_classes=5, settings=settings, minmin=mm, masks=foreground_masks(x), seed=0,
        device="cpu",
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_craft_reaches_its_stop_accuracy_with_iters_100_as_with_the_default() -> None:
    default = _craft(20)
    assert default.accuracy[-1] >= 0.99
    more = _craft(100)
    assert PGDSettings(mode="unlearnable", eps=EPS, iters=100).step == pytest.approx(EPS / 40)
    # the same loop, so the same surrogate noise, rounds and accuracy
    assert more.accuracy == default.accuracy
    np.testing.assert_array_equal(more.deltas, default.deltas)
    # what the coupling did: the loop given the per-case step of --iters 100 falls short
    coupled = _craft(100, noise_step=2.5 * EPS / 100)
    assert coupled.rounds == 6 and coupled.accuracy[-1] < 0.99
