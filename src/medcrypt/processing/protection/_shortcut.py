"""Keyed shortcut perturbations: class-wise synthetic patch noise, no model needed.

After "linearly separable synthetic perturbations" (LSP, Yu et al. 2022): every class owns a
fixed pattern of constant patches (``patch`` x ``patch`` pixels, values uniform in [-1, 1]);
adding the same pattern to every image of a class gives a model trained on the released
images a shortcut easier than the anatomy. Here the pattern of class ``c`` at size (H, W) is
drawn from a generator seeded with ``HMAC-SHA256(key secret, "medcrypt-shortcut-v1|c|H|W|p")``:
a function of the key, different for every class and key, and nobody without the secret can
reproduce it or learn anything about the secret from it.

Per image the pattern is restricted to the image's foreground mask and scaled to the budget
(L2 norm ``eps`` over the mask, or amplitude ``eps`` for Linf), so it costs one vectorised
multiply per image: it runs at IO speed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["shortcut_delta", "shortcut_pattern"]

_DOMAIN = "medcrypt-shortcut-v1"


def _seed(secret: str, cls: int, shape: tuple[int, int], patch: int) -> int:
    msg = f"{_DOMAIN}|{int(cls)}|{shape[0]}|{shape[1]}|{int(patch)}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return int.from_bytes(digest[:16], "big")


@functools.lru_cache(maxsize=64)
def _pattern(secret: str, cls: int, shape: tuple[int, int], patch: int) -> np.ndarray:
    h, w = shape
    rng = np.random.default_rng(_seed(secret, cls, shape, patch))
    ph, pw = -(-h // patch), -(-w // patch)
    cells = rng.uniform(-1.0, 1.0, size=(ph, pw))
    full = np.repeat(np.repeat(cells, patch, axis=0), patch, axis=1)[:h, :w]
    out = full.astype(np.float32)
    out.setflags(write=False)
    return out


def shortcut_pattern(secret: str, cls: int, shape: tuple[int, int], patch: int) -> np.ndarray:
    """The unscaled (H, W) float32 pattern in [-1, 1] of class ``cls`` under ``secret``.

    Deterministic: the same secret, class, shape and patch size give the same pattern.
    """
    if patch < 1:
        raise ValueError(f"shortcut patch size must be >= 1, got {patch}")
    return _pattern(secret, int(cls), (int(shape[0]), int(shape[1])), int(patch)).copy()


def shortcut_delta(
    secret: str,
    classes: Sequence[int] | np.ndarray,
    shape: tuple[int, int],
    *,
    eps: float,
    norm: str,
    patch: int,
    mask: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per row, class ``classes[i]``'s pattern restricted to ``mask[i]`` and scaled to eps.

    Args:
        secret: the key's secret (the HMAC key of the pattern seeds; never stored).
        classes: (N,) the class whose pattern each row gets.
        shape: (H, W) of the images.
        eps: budget of each row's perturbation.
        norm: ``l2`` (L2 norm over the mask equals eps) or ``linf`` (amplitude eps).
        patch: side of the constant patches.
        mask: (N, 1, H, W) foreground, or None for the whole image.

    Returns:
        (N, 1, H, W) float32 perturbations (zero off the mask).
    """
    cls = [int(c) for c in np.asarray(classes).reshape(-1)]
    distinct = sorted(set(cls))
    bank = torch.from_numpy(
        np.stack(
            [_pattern(secret, c, (int(shape[0]), int(shape[1])), int(patch)) for c in distinct]
        )
        if distinct
        else np.zeros((0, *shape), dtype=np.float32)
    ).to(device)
    index = torch.tensor([distinct.index(c) for c in cls], dtype=torch.long, device=device)
    d = bank[index].unsqueeze(1)
    if mask is not None:
        d = d * mask.to(d.dtype)
    flat = d.flatten(1)
    if norm == "linf":
        size = flat.abs().amax(dim=1)
    elif norm == "l2":
        size = flat.norm(dim=1)
    else:
        raise ValueError(f"expected norm 'l2' or 'linf', got {norm!r}")
    scale = torch.where(size > 0, eps / size.clamp_min(1e-12), torch.zeros_like(size))
    return d * scale.view(-1, 1, 1, 1)
