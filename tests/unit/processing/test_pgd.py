from __future__ import annotations

import numpy as np
import pytest
import torch

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing import PGDSettings, build_model, project_l2, targeted_pgd_l2

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = PGDSettings(eps=1.0, step=0.1, iters=15, precision="fp32")


def _other_targets(labels: np.ndarray, shift: int) -> torch.Tensor:
    return torch.from_numpy((labels + shift) % 3)


def test_reaches_targets_on_a_trained_model(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(blobs_test[0][:18]).unsqueeze(1)
    t = _other_targets(blobs_test[1][:18], 1)
    with torch.no_grad():
        clean_hits = (trained(x).argmax(1) == t).float().mean().item()
    out = targeted_pgd_l2(trained, x, t, settings=FAST, num_classes=3)
    with torch.no_grad():
        pred = trained(out.images).argmax(1)
    rate = (pred == t).float().mean().item()
    # chance is 1/3 and the clean model almost never predicts a wrong target
    assert clean_hits < 0.2
    assert rate >= 0.8
    assert torch.equal(out.reached, pred == t)
    d = (out.images - x).flatten(1).norm(dim=1)
    assert (d <= FAST.eps + 1e-5).all()
    assert out.images.min() >= 0 and out.images.max() <= 1


def test_batched_equals_per_image(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    """Rows are independent: one batched call gives each row's single-image result."""
    x = torch.from_numpy(blobs_test[0][:4]).unsqueeze(1)
    rows = torch.tensor([0, 0, 1, 1, 2, 3])
    targets = torch.tensor([1, 2, 2, 0, 0, 1])
    settings = PGDSettings(eps=1.0, step=0.1, iters=6, precision="fp32")
    batched = targeted_pgd_l2(trained, x[rows], targets, settings=settings)
    for i in range(rows.numel()):
        single = targeted_pgd_l2(trained, x[rows[i : i + 1]], targets[i : i + 1], settings=settings)
        assert torch.allclose(batched.images[i], single.images[0], atol=1e-5)
        assert torch.allclose(batched.loss[i], single.loss[0], atol=1e-4)


def test_best_iterate_never_worse_than_last(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(blobs_test[0][:6]).unsqueeze(1)
    t = _other_targets(blobs_test[1][:6], 2)
    big_step = PGDSettings(eps=2.0, step=1.0, iters=8, precision="fp32")
    best = targeted_pgd_l2(trained, x, t, settings=big_step)
    last = targeted_pgd_l2(
        trained, x, t, settings=big_step.model_copy(update={"best_iterate": False})
    )
    assert (best.loss <= last.loss + 1e-6).all()


def test_same_input_same_output(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(blobs_test[0][:3]).unsqueeze(1)
    t = torch.tensor([1, 2, 0])
    a = targeted_pgd_l2(trained, x, t, settings=FAST)
    b = targeted_pgd_l2(trained, x, t, settings=FAST)
    assert torch.equal(a.images, b.images)


def test_model_state_is_restored() -> None:
    model = build_model("vgg11", 3, width=8).train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)  # a caller's own choice must survive too
    targeted_pgd_l2(model, torch.rand(2, 1, 32, 32), torch.tensor([0, 1]), settings=FAST)
    assert model.training
    flags = [p.requires_grad for p in model.parameters()]
    assert flags[0] is False and all(flags[1:])
    assert all(p.grad is None for p in model.parameters())


def test_out_of_range_targets_refused() -> None:
    model = build_model("vgg11", 3, width=8)
    with pytest.raises(EncryptionKeyError, match=r"range\(3\), got values from 0 to 3"):
        targeted_pgd_l2(model, torch.rand(2, 1, 32, 32), torch.tensor([0, 3]), num_classes=3)


def test_zero_iterations_returns_the_input() -> None:
    model = build_model("vgg11", 3, width=8)
    x = torch.rand(2, 1, 32, 32)
    out = targeted_pgd_l2(model, x, torch.tensor([0, 1]), settings=PGDSettings(iters=0))
    assert torch.equal(out.images, x)


def test_project_l2_only_shrinks_rows_outside() -> None:
    d = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 0.01)])
    p = project_l2(d, 2.0)
    assert p[0].norm().item() == pytest.approx(2.0, rel=1e-6)
    assert torch.equal(p[1], d[1])


def test_bf16_runs_on_cpu_and_stays_in_budget(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(blobs_test[0][:3]).unsqueeze(1)
    settings = PGDSettings(eps=0.5, iters=3, precision="bf16", channels_last=True)
    out = targeted_pgd_l2(trained, x, torch.tensor([1, 2, 0]), settings=settings)
    assert ((out.images - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()


def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing.protection import _pgd

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(_pgd, "cpu_has_native_bf16", lambda native=native: native)
        assert _pgd.resolve_precision(PGDSettings(), cpu) == (native, True)
        # an explicit choice wins over the hardware rule
        assert _pgd.resolve_precision(PGDSettings(precision="fp32"), cpu)[0] is False
        assert _pgd.resolve_precision(PGDSettings(precision="bf16"), cpu)[0] is True
        summary = _pgd.compute_summary(PGDSettings(), cpu)
        assert summary == {"device": "cpu", "dtype": "bf16" if native else "fp32",
                           "channels_last": True}  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx2 fma", False),  # e.g. AMD Zen 3: bf16 would be emulated
        ("fpu avx512f avx512_bf16 avx512_vnni", True),  # Cooper Lake, Zen 4
        ("fpu avx512f amx_tile amx_bf16 amx_int8", True),  # Sapphire Rapids
        ("fpu avx512f avx512bw", False),  # AVX-512 without bf16 instructions
    ],
)
def test_cpuinfo_flags_decide_native_bf16(flags: str, expected: bool) -> None:
    from medcrypt.processing.protection._pgd import _cpuinfo_has_bf16

    text = f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    assert _cpuinfo_has_bf16(text) is expected
    assert _cpuinfo_has_bf16("processor\t: 0\n") is False  # no flags line at all


def test_bf16_pgd_reaches_targets_as_often_as_fp32(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing.protection._pgd import prepare_for_pgd

    x = torch.from_numpy(blobs_test[0][:24]).unsqueeze(1)
    t = _other_targets(blobs_test[1][:24], 1)
    rates, losses = {}, {}
    for precision in ("fp32", "bf16"):
        settings = PGDSettings(eps=1.0, step=0.1, iters=15, precision=precision)
        out = targeted_pgd_l2(prepare_for_pgd(trained, settings), x, t, settings=settings)
        assert ((out.images - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
        with torch.no_grad():  # judged by the fp32 model, whatever precision attacked it
            logits = trained.eval()(out.images)
        rates[precision] = (logits.argmax(1) == t).float().mean().item()
        losses[precision] = torch.nn.functional.cross_entropy(logits, t).item()
    assert rates["fp32"] >= 0.5  # the attack does something to compare
    assert rates["bf16"] >= rates["fp32"] - 0.1
    assert losses["bf16"] <= losses["fp32"] * 1.25 + 0.05


def test_channels_last_is_the_default_and_matches_the_contiguous_layout(
    trained, blobs_test
) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing.protection._pgd import (
        cpu_has_native_bf16,
        prepare_for_pgd,
        resolve_precision,
    )

    cpu = torch.device("cpu")
    native = cpu_has_native_bf16()
    assert resolve_precision(PGDSettings(), cpu) == (native, True)
    assert resolve_precision(PGDSettings(channels_last=False), cpu) == (native, False)
    x = torch.from_numpy(blobs_test[0][:6]).unsqueeze(1)
    t = _other_targets(blobs_test[1][:6], 1)
    outs = {}
    for layout in (True, False):
        settings = PGDSettings(eps=0.5, iters=4, channels_last=layout, precision="fp32")
        model = prepare_for_pgd(trained, settings)
        outs[layout] = targeted_pgd_l2(model, x, t, settings=settings)
    # same attack in either layout, up to float32 summation order
    assert torch.allclose(outs[True].images, outs[False].images, atol=1e-4)
    assert torch.equal(outs[True].reached, outs[False].reached)
    assert outs[True].images.is_contiguous()  # what callers get back is plain NCHW


@pytest.mark.gpu
def test_cuda_bf16_channels_last_reaches_targets(trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    import copy

    model = copy.deepcopy(trained).cuda().to(memory_format=torch.channels_last)
    x = torch.from_numpy(blobs_test[0][:18]).unsqueeze(1).cuda()
    t = _other_targets(blobs_test[1][:18], 1).cuda()
    out = targeted_pgd_l2(model, x, t, settings=PGDSettings(eps=1.0, iters=15))
    with torch.no_grad():
        rate = (model(out.images).argmax(1) == t).float().mean().item()
    assert rate >= 0.8
    assert ((out.images - x).flatten(1).norm(dim=1) <= 1.0 + 1e-4).all()


@pytest.mark.parametrize("arch", ["resnet18", "preact_resnet18", "vgg11"])
def test_prepared_copy_computes_the_same_function(arch: str) -> None:
    from medcrypt.processing import Normalisation, prepare_for_pgd

    model = build_model(arch, 3, width=8, seed=1).train()
    model.set_normalisation(Normalisation(mean=(0.3,), std=(0.2,)))
    gen = torch.Generator().manual_seed(0)
    for mod in model.modules():  # non-trivial batch-norm statistics to fold
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5, generator=gen)
            mod.running_var.uniform_(0.5, 2.0, generator=gen)
    prepared = prepare_for_pgd(model, PGDSettings(channels_last=True))
    x = torch.rand(4, 1, 32, 32, generator=gen)
    assert model.training  # the caller's model is untouched
    assert all(p.requires_grad for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), prepared(x), atol=1e-5)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert n_bn < sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
