"""No host synchronisation inside the PGD loops (issue 24): checked on CUDA only.

``torch.cuda.set_sync_debug_mode("error")`` makes any operation that waits for the device
(``.item()``, ``.cpu()``, a data-dependent shape, a blocking copy to the host) raise. The
loops run with the checks that precede them switched off (``num_classes=None``: the target
range check reads the targets once, before the loop, by design), so what is left is the
loop itself plus the final pass. Skipped without a GPU (the CPU benchmark reports what share
of ``encrypt`` is not passes instead).
"""

from __future__ import annotations

import pytest
import torch

from medcrypt.processing import PGDSettings, build_model
from medcrypt.processing.protection._pgd import prepare_for_pgd, targeted_pgd_l2
from medcrypt.processing.protection._poison import craft_poison

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _setup(settings: PGDSettings) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    dev = torch.device("cuda")
    model = prepare_for_pgd(build_model("resnet18", 5, width=8, seed=0), settings, dev)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 32, 32, generator=gen).to(dev)
    t = torch.randint(0, 5, (8,), generator=gen).to(dev)
    return model, x, t


def test_paper_pgd_loop_has_no_host_sync() -> None:
    cfg = PGDSettings(eps=1.0, step=0.1, iters=5, best_iterate=True)
    model, x, t = _setup(cfg)
    mask = (x > 0.2).float()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = targeted_pgd_l2(model, x, t, settings=cfg, mask=mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.images.shape == x.shape


def test_unlearnable_crafting_loop_has_no_host_sync() -> None:
    # augmentation draws come from a CPU generator and are copied to the device per step:
    # a host-to-device copy, which does not wait for the device
    cfg = PGDSettings(mode="unlearnable", eps=1.0)
    model, x, t = _setup(cfg)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = craft_poison([model], x, t, settings=cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.images.shape == x.shape
