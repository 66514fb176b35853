"""A self-supervised thief: contrastive pretraining on the release, then a linear probe.

Error-minimizing noise is a shortcut for *labels*: a thief who never shows the labels to the
encoder may learn the anatomy instead (Transferable Unlearnable Examples, Ren et al., ICLR
2023, is written against exactly this). The thief here is SimCLR (Chen et al. 2020), small:
two random views of every image (resized crops of 40-100% of the area, flips, rotations up
to 10 degrees, then a random brightness and contrast change), an NT-Xent loss over the batch
on a two-layer projection head, and afterwards a logistic-regression probe on the frozen,
un-augmented features of the labelled release, scored on each test set.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from medcrypt.processing.assessment._victims import score_predictions
from medcrypt.processing.models._nets import build_model
from medcrypt.processing.models._training import normalisation_of, to_tensor
from medcrypt.processing.models._views import random_views

__all__ = ["contrastive_probe", "nt_xent"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: each view must find its own pair
    among the 2B - 1 other embeddings of the batch."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    b = z1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    pair = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return nn.functional.cross_entropy(sim, pair)


def _view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    v = random_views(x, flip=True, rotate=10.0, crop_scale=0.4, generator=gen)
    n = x.shape[0]
    gain = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    mean = v.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    return ((v - mean) * contrast + mean * gain).clamp(0.0, 1.0)


@torch.no_grad()
def _features(encoder: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def contrastive_probe(
    images: np.ndarray,
    labels: np.ndarray,
    tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    arch: str = "resnet18",
    width: int = 16,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    temperature: float = 0.5,
    probe_steps: int = 300,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Pretrain ``arch`` contrastively on ``images`` (no labels), probe it with ``labels``.

    Returns, per test set, the probe's accuracy and balanced accuracy
    (``{"acc": ..., "bacc": ...}``), and under ``"pretrain"`` the last epoch's NT-Xent loss.
    """
    x = to_tensor(images)
    model = build_model(arch, n_classes, width=width, seed=seed)
    model.set_normalisation(normalisation_of(x))
    body = model.body  # every family ends in its linear classifier
    head = body[-1] if isinstance(body, nn.Sequential) else None
    if not isinstance(body, nn.Sequential) or not isinstance(head, nn.Linear):
        raise ValueError(f"{arch}: expected a body ending in a linear head")
    head_in = head.in_features
    body[-1] = nn.Identity()
    proj = nn.Sequential(nn.Linear(head_in, head_in), nn.ReLU(), nn.Linear(head_in, 64))
    params = [*model.parameters(), *proj.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    loss = torch.zeros(())
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - 1, batch_size):
            xb = x[order[i : i + batch_size]]
            if xb.shape[0] < 2:
                continue
            loss = nt_xent(proj(model(_view(xb, gen))), proj(model(_view(xb, gen))), temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    feats = _features(model, x)
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    probe = nn.Linear(feats.shape[1], n_classes)
    popt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    z = (feats - mu) / sd
    for _ in range(probe_steps):  # full-batch logistic regression on frozen features
        popt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(probe(z), y).backward()
        popt.step()
    out: dict[str, dict[str, float]] = {"pretrain": {"loss": float(loss.detach())}}
    for name, (tx, ty) in tests.items():
        with torch.no_grad():
            pred = probe((_features(model, to_tensor(tx)) - mu) / sd).argmax(1).numpy()
        acc, bacc = score_predictions(np.asarray(ty), pred)
        out[name] = {"acc": round(acc, 4), "bacc": round(bacc, 4)}
    return out
