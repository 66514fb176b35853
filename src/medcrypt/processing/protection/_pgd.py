"""Batched targeted L2 PGD (paper Eq. 1): ``argmin_{||x'-x||_2 <= eps} CE(f(x'), t)``.

Every row of the batch is one (image, target) pair, so the caller repeats each image once per
target and all targets of all images go through ONE forward/backward per iteration. The model
is put in eval mode (batch-norm statistics fixed, so rows are independent) and its parameters
stop requiring gradients for the duration; both are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing.protection._settings import PGDSettings

__all__ = [
    "PGDOutput",
    "compute_summary",
    "cpu_has_native_bf16",
    "enforce_budget",
    "frozen_eval",
    "prepare_for_pgd",
    "project_l2",
    "resolve_precision",
    "targeted_pgd_l2",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PGDOutput:
    """Result of :func:`targeted_pgd_l2`, one row per (image, target) pair.

    Attributes:
        images: adversarial images, same shape as the input, in [0, 1], within eps.
        loss: cross-entropy to the target of the returned images (N,).
        reached: whether the model predicts the target for the returned images (N,) bool.
    """

    images: torch.Tensor
    loss: torch.Tensor
    reached: torch.Tensor


def _norms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (d.ndim - 1)))


def project_l2(delta: torch.Tensor, eps: float, cap: float | None = None) -> torch.Tensor:
    """Scale each row of ``delta`` down onto the L2 ball of radius ``eps`` (if outside).

    With a per-pixel ``cap`` every entry is first clamped to [-cap, cap]; the scaling that
    follows only shrinks entries, so the result lies in both the box and the ball. Without
    one the computation is the paper's, unchanged.
    """
    if cap is not None:
        delta = delta.clamp(-cap, cap)
    n = _norms(delta)
    scale = torch.where(n > eps, eps / n.clamp_min(1e-12), torch.ones_like(n))
    return delta * scale


def _over_cap(out: torch.Tensor, originals: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Per pixel, whether ``out`` lies more than ``cap`` from ``originals`` (float64)."""
    if cap is None:
        return torch.zeros_like(out, dtype=torch.bool)
    return (out.double() - originals.double()).abs() > cap


def enforce_budget(
    originals: torch.Tensor, images: torch.Tensor, eps: float, cap: float | None = None
) -> torch.Tensor:
    """Project ``images`` onto the eps-ball around ``originals`` and clamp to [0, 1], checked.

    Unlike a single float32 projection, the result is verified in float64 and rows left over
    eps by rounding are shrunk again, so ``||out - originals||_2 <= eps`` holds exactly for
    the returned float32 values; with a per-pixel ``cap``, so does ``|out - originals| <=
    cap`` for every pixel (a pixel float32 rounding left over it steps one ulp back).
    """
    out = (originals + project_l2(images - originals, eps, cap)).clamp(0.0, 1.0)
    for _ in range(20):
        bad = _over_cap(out, originals, cap)
        if bool(bad.any()):
            out = torch.where(bad, torch.nextafter(out, originals), out)
        d = (out.double() - originals.double()).flatten(1).norm(dim=1)
        over = d > eps
        if not bool(over.any()) and not bool(_over_cap(out, originals, cap).any()):
            return out
        shrink = torch.where(over, (eps / d) * (1 - 1e-6), torch.ones_like(d)).to(out.dtype)
        shrink = shrink.view(-1, *([1] * (out.ndim - 1)))
        out = (originals + (out - originals) * shrink).clamp(0.0, 1.0)
    raise RuntimeError("could not bring the perturbation within the L2 budget")  # unreachable


#: CPU feature flags (Linux ``/proc/cpuinfo`` names) that give native bf16 matrix arithmetic.
_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def _cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether the first ``flags`` line of a ``/proc/cpuinfo`` text names a bf16 flag."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(_BF16_CPU_FLAGS & set(line.partition(":")[2].split()))
    return False


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (Intel AMX-BF16 or AVX512-BF16).

    Read from the kernel's CPU flags (Linux); elsewhere, or when torch's oneDNN has no bf16
    kernels, ``False``. Without these instructions oneDNN emulates bf16, which is slower
    than fp32, so ``precision="auto"`` only picks bf16 on CPUs that have them.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            if not _cpuinfo_has_bf16(fh.read()):
                return False
    except OSError:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_precision(settings: PGDSettings, device: torch.device) -> tuple[bool, bool]:
    """(use bf16 autocast, use channels_last) for ``settings`` on ``device``.

    ``precision="auto"`` is bf16 on CUDA devices that support it and on CPUs with native
    bf16 arithmetic (:func:`cpu_has_native_bf16`: AMX or AVX512-BF16, where it measured
    1.7-3.5x faster PGD passes than fp32), fp32 elsewhere.
    """
    if settings.precision == "bf16":
        bf16 = True
    elif settings.precision == "fp32":
        bf16 = False
    elif device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
    else:
        bf16 = device.type == "cpu" and cpu_has_native_bf16()
    # NHWC by default on every device: oneDNN on CPU and cuDNN on GPU both run these
    # convolutions faster in it (measured on CPU: 1.1-1.4x for the PGD passes).
    channels_last = True if settings.channels_last is None else settings.channels_last
    return bf16, channels_last


def compute_summary(settings: PGDSettings, device: torch.device) -> dict[str, str | bool]:
    """What PGD actually runs with on ``device`` (for records): device, dtype, layout."""
    bf16, channels_last = resolve_precision(settings, device)
    return {
        "device": str(device),
        "dtype": "bf16" if bf16 else "fp32",
        "channels_last": channels_last,
    }


def prepare_for_pgd(
    model: nn.Module, settings: PGDSettings | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """An inference copy of ``model`` for PGD: eval mode, batch norms folded, on ``device``.

    Every BatchNorm that follows a convolution is folded into it (torch.fx), which computes
    the same function in eval mode with fewer passes over memory; the copy is moved to
    ``device`` and to channels_last when ``settings`` select it. The caller's model is not
    modified. Models fx cannot trace are copied unfused.
    """
    dev = torch.device(device)
    prepared = copy.deepcopy(model).eval()
    try:
        with warnings.catch_warnings():  # the fx helpers import deprecated torch.jit bits
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        prepared = fuse(prepared, inplace=True)
    except Exception as exc:  # tracing is best effort: any failure leaves the plain copy
        logger.debug("conv/batch-norm folding skipped (%s: %s)", type(exc).__name__, exc)
    prepared = prepared.to(dev)
    _, channels_last = resolve_precision(settings or PGDSettings(), dev)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for p in prepared.parameters():
        p.requires_grad_(False)
    return prepared


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside the block; previous state restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def targeted_pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    settings: PGDSettings | None = None,
    num_classes: int | None = None,
    mask: torch.Tensor | None = None,
) -> PGDOutput:
    """Targeted L2 PGD toward ``targets[i]`` for every row ``images[i]``.

    Each step moves ``x`` by ``step`` along the per-sample L2-normalised negative gradient of
    the cross-entropy to the target, projects ``x - x0`` onto the eps-ball and clamps to
    [0, 1]. With ``best_iterate`` the iterate of lowest target loss is returned per row.
    With ``settings.linf_cap`` every pixel's change is clamped to the cap before the L2
    projection (the result lies in both).

    Args:
        model: classifier over [0, 1] images; must be on ``images``' device (and in
            channels_last format already if that is wanted; the input is converted here).
        images: (N, C, H, W) float32 in [0, 1].
        targets: (N,) int64 target classes.
        settings: PGD parameters (defaults: :class:`PGDSettings`).
        num_classes: if given, targets are checked to lie in ``range(num_classes)``.
        mask: (N, 1, H, W) foreground (1 = may change): gradients and the ball are restricted
            to it, so pixels off the mask keep their input value exactly. ``None`` (the whole
            image) runs the paper's method unchanged.

    Raises:
        EncryptionKeyError: a target is out of range.
    """
    cfg = settings or PGDSettings()
    if images.ndim != 4 or targets.ndim != 1 or targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"expected images (N, C, H, W) and targets (N,), got {tuple(images.shape)} "
            f"and {tuple(targets.shape)}"
        )
    targets = targets.to(images.device, torch.long)
    if num_classes is not None and targets.numel():
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= num_classes:
            raise EncryptionKeyError(
                f"PGD targets must lie in range({num_classes}), got values from {lo} to {hi}"
            )
    bf16, channels_last = resolve_precision(cfg, images.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x0 = images.detach().to(torch.float32).contiguous(memory_format=fmt)
    m = None if mask is None else mask.to(x0.device, torch.float32)
    x = x0.clone()
    n = x.shape[0]
    best_x = x0.clone()
    best_loss = torch.full((n,), float("inf"), device=x.device)
    best_hit = torch.zeros(n, dtype=torch.bool, device=x.device)
    autocast = (
        torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )

    def consider(cand: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
        # in place so the closure's tensors are updated; ties keep the earlier iterate
        better = loss < best_loss
        if not cfg.best_iterate:
            better = torch.ones_like(better)
        best_loss.copy_(torch.where(better, loss, best_loss))
        best_hit.copy_(torch.where(better, logits.argmax(1) == targets, best_hit))
        best_x.copy_(torch.where(better.view(-1, 1, 1, 1), cand, best_x))

    with frozen_eval(model):
        for _ in range(cfg.iters):
            x.requires_grad_(True)
            with autocast:
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                consider(x.detach(), logits.detach().float(), loss.detach())
                if m is not None:
                    grad = grad * m
                g = grad / _norms(grad).clamp_min(1e-12)
                x = x.detach() - cfg.step * g
                d = x - x0 if m is None else (x - x0) * m
                x = (x0 + project_l2(d, cfg.eps, cfg.linf_cap)).clamp_(0.0, 1.0)
        with torch.no_grad(), autocast:
            logits = model(x)
        with torch.no_grad():
            loss = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            consider(x.detach(), logits.float(), loss)
    return PGDOutput(images=best_x.contiguous(), loss=best_loss.clone(), reached=best_hit.clone())
