"""The bare-pass bound: a PGD-style attack's forward and input-gradient passes, nothing else.

Imported as ``from _passes import ...`` (the benchmarks run as scripts from the repository
root, which puts this folder on ``sys.path``). An attack that runs ``iters`` steps on ``rows``
rows needs at least ``iters`` forward + input-gradient passes and one last forward pass over
those rows; :func:`bare_passes` runs exactly those (the same model copy, layout and precision
as the attack), so its time is a lower bound no implementation of the same attack beats on
that device, and ``attack time / bare time`` is how much of the attack is its own work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn


def bare_passes(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    targets: torch.Tensor,
    iters: int,
    *,
    bf16: bool,
    channels_last: bool,
) -> Callable[[], object]:
    """A callable running ``iters`` forward + input-gradient passes and one final forward
    over ``x`` through every model of ``models`` (an ensemble's loss is summed)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x0 = x.detach().to(torch.float32).contiguous(memory_format=fmt)
    t = targets.to(x0.device, torch.long)
    autocast = (
        torch.autocast(device_type=x0.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )

    def loss_of(xi: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=xi.device)
        for m in models:
            with autocast:
                logits = m(xi)
            total = total + nn.functional.cross_entropy(logits.float(), t, reduction="sum")
        return total

    def run() -> None:
        for _ in range(iters):
            xi = x0.detach().requires_grad_(True)
            torch.autograd.grad(loss_of(xi), xi)
        with torch.no_grad():
            loss_of(x0)

    return run
