"""Settings of the targeted L2 PGD (paper Eq. 1), shared by keys, the Encryptor and the CLI."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medcrypt.config import StrictModel

__all__ = ["PGDSettings", "resolve_device"]


class PGDSettings(StrictModel):
    """Targeted L2 projected gradient descent, defaults from the paper's brain-MRI run (Sec. 5).

    Attributes:
        eps: L2 radius of the perturbation budget, in [0, 1] pixel units over the whole slice.
        step: length of every (L2-normalised) gradient step.
        iters: number of gradient steps.
        best_iterate: return, per sample, the iterate with the lowest target loss (as the
            paper's code does) instead of the last one.
        precision: ``"auto"`` uses bf16 autocast on CUDA devices that support it and on
            CPUs with native bf16 arithmetic (Intel AMX / AVX512-BF16), fp32 elsewhere;
            ``"fp32"`` / ``"bf16"`` force one (bf16 on a CPU without those instructions
            is emulated, and slower than fp32). Records say which one ran.
        channels_last: NHWC memory format for model and inputs; ``None`` = on (CPU and
            CUDA alike: on CPU it measured 1.1-1.4x faster forward/input-gradient passes,
            see ``benchmarks/pgd_breakdown.py``); ``False`` forces the contiguous layout.
    """

    eps: float = Field(default=2.0, gt=0.0)
    step: float = Field(default=0.1, gt=0.0)
    iters: int = Field(default=100, ge=0)
    best_iterate: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | None = None


def resolve_device(device: str | None) -> str:
    """``"auto"`` / ``None`` -> ``"cuda"`` when CUDA is available, else ``"cpu"``."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
