"""Where models and attacks run: the one rule for ``device="auto"``."""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device: str | None) -> str:
    """``"auto"`` / ``None`` -> ``"cuda"`` when CUDA is available, else ``"cpu"``."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
