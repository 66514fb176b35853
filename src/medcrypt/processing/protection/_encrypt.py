"""The Encryptor: per target of every image a perturbation (the key's mode), then the combiner.

Modes (``settings.mode``): ``paper`` runs the paper's batched targeted L2 PGD; ``poison`` the
TAP-style crafting of :mod:`._poison`; ``shortcut`` the keyed class-wise pattern of
:mod:`._shortcut` for the target class (no model); ``shortcut+poison`` the pattern with
``shortcut_share`` of the budget (of eps^2 under L2, of eps under Linf) plus poison crafting
on top within the rest (the total re-projected onto the eps-ball after combining);
``unlearnable`` the same crafting toward each image's *own* label against the key's min-min
surrogate (error-minimizing noise, :mod:`._unlearnable`; the key maps every class to itself,
combiner ``none``). With
``settings.foreground`` every mode spends the budget on the foreground mask only and
background pixels come out bit-identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medcrypt.errors import EncryptionKeyError, ImageFormatError, ModelError
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._training import predict
from medcrypt.processing.protection._combiners import combine
from medcrypt.processing.protection._foreground import foreground_masks
from medcrypt.processing.protection._keys import EncryptionKey
from medcrypt.processing.protection._metrics_torch import batch_metrics, l2_linf
from medcrypt.processing.protection._pgd import (
    PGDOutput,
    compute_summary,
    prepare_for_pgd,
    targeted_pgd_l2,
)
from medcrypt.processing.protection._poison import craft_poison
from medcrypt.processing.protection._settings import PGDSettings
from medcrypt.processing.protection._shortcut import shortcut_delta

__all__ = ["EncryptionResult", "Encryptor"]

logger = logging.getLogger(__name__)

#: mode unlearnable never takes an anatomy pixel below min(original, this): one 8-bit level
_DARK_FLOOR = 1.0 / 255.0


@dataclass(frozen=True)
class EncryptionResult:
    """Output of :meth:`Encryptor.encrypt`, one entry per input image.

    Attributes:
        images: (B, H, W) float32 released images in [0, 1], each within eps (in the
            settings' norm) of its input.
        l2, linf: (B,) float64 distance of each released image to its input.
        target_success: (B,) fraction of the image's targets that its per-target outputs
            reached (base model predicts the target); ``nan`` in ``shortcut`` mode without
            a model.
        targets: per image, the key's targets for its label.
        foreground: (B, H, W) bool anatomy masks (computed, or given), whether or not the
            budget was confined to them (``settings.foreground``).
        psnr, ssim: (B,) over the whole slice (float images, before any quantisation).
        psnr_foreground, ssim_foreground: (B,) over the foreground mask only.
    """

    images: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    target_success: np.ndarray
    targets: list[tuple[int, ...]]
    foreground: np.ndarray | None = None
    psnr: np.ndarray | None = None
    ssim: np.ndarray | None = None
    psnr_foreground: np.ndarray | None = None
    ssim_foreground: np.ndarray | None = None


def _model_classes(model: nn.Module, in_channels: int) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    p = next(iter(model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, 32, 32, device=dev))
    finally:
        model.train(was)
    return int(out.shape[-1])


def _within_box(x: torch.Tensor, delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x + delta`` clipped to [0, 1], with an L2 delta scaled up where clipping ate it.

    A bright or saturated slice clips away much of a fixed pattern (in a test, 80% of it):
    under L2 the pattern is scaled up (at most 8x, a few rounds) until the clipped
    perturbation spends its budget again, then brought back within eps. An Linf pattern
    already has amplitude eps wherever it is not clipped, so it is only clipped.
    """
    if norm != "l2":
        return (x + delta).clamp(0.0, 1.0)
    scale = torch.ones(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)
    for _ in range(4):
        size = ((x + delta * scale).clamp(0.0, 1.0) - x).flatten(1).norm(dim=1)
        grow = torch.where(size > 0, eps / size.clamp_min(1e-12), torch.ones_like(size))
        scale = (scale * grow.view(-1, 1, 1, 1)).clamp(max=8.0)
    d = (x + delta * scale).clamp(0.0, 1.0) - x
    size = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return x + d * torch.where(size > eps, eps / size.clamp_min(1e-12), torch.ones_like(size))


class Encryptor:
    """Encrypt batches of slices with a key and its base model.

    Args:
        model: the base classifier over [0, 1] images (e.g. ``load_checkpoint(...).model``).
            The Encryptor works on a private copy (:func:`prepare_for_pgd`). ``None`` only
            in ``shortcut`` mode (no model: no target success either).
        key: the secret key; its class count must match the model's outputs.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        settings: PGD settings overriding the key's (``key.pgd`` when None).
        ensemble: further crafting models for the poison modes (the loss is averaged over
            the base model and these); same classes as the key.

    Raises:
        EncryptionKeyError: the key does not fit the model.
        ModelError: a model that is not greyscale, or no model for a crafting mode.
    """

    def __init__(
        self,
        model: nn.Module | None,
        key: EncryptionKey,
        *,
        device: str = "auto",
        settings: PGDSettings | None = None,
        ensemble: Sequence[nn.Module] = (),
    ) -> None:
        self.key = key
        self.settings = settings or key.pgd
        self.device = torch.device(resolve_device(device))
        if model is None and (self.settings.crafted or ensemble):
            raise ModelError(f"mode {self.settings.mode!r} crafts against a model; none given")
        if ensemble and self.settings.mode not in ("poison", "shortcut+poison", "unlearnable"):
            raise ModelError(
                f"a crafting ensemble only serves the poison and unlearnable modes, not "
                f"{self.settings.mode!r}"
            )
        self.in_channels = 1
        prepared: list[nn.Module] = []
        for m in [] if model is None else [model, *ensemble]:
            channels = int(getattr(m, "in_channels", 1))
            if channels != 1:
                raise ModelError(
                    f"the Encryptor works on greyscale slices (1 input channel), model has "
                    f"{channels}"
                )
            key.check_model(_model_classes(m, 1))
            # a private inference copy (batch norm folded, on device, channels_last if
            # selected): the caller's model is left as it was
            prepared.append(prepare_for_pgd(m, self.settings, self.device))
        self.model: nn.Module | None = prepared[0] if prepared else None
        self.ensemble: tuple[nn.Module, ...] = tuple(prepared[1:])
        #: what PGD runs with here (device, dtype, layout), for records: ``precision="auto"``
        #: resolves differently on different hardware
        self.compute: dict[str, str | bool] = compute_summary(self.settings, self.device)

    def _batch(self, images: np.ndarray) -> np.ndarray:
        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or 0 in arr.shape:
            raise ImageFormatError(f"expected images shaped (B, H, W), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ImageFormatError(f"expected float images in [0, 1], got dtype {arr.dtype}")
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageFormatError(
                f"expected finite values in [0, 1], got range [{np.nanmin(arr)}, {np.nanmax(arr)}]"
            )
        return arr.astype(np.float32, copy=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The base model's predicted labels (int64, (B,)) for (B, H, W) images in [0, 1]."""
        arr = self._batch(images)
        if self.model is None:
            raise ModelError("this Encryptor has no model to predict labels with")
        return predict(self.model, arr, device=str(self.device))

    def _perturb(
        self, x: torch.Tensor, targets: np.ndarray, mask: torch.Tensor | None
    ) -> PGDOutput:
        """Per-target outputs (one row per (image, target)) in the settings' mode."""
        cfg = self.settings
        n = self.key.num_classes
        t = torch.from_numpy(targets).to(self.device)
        if cfg.mode == "paper":
            assert self.model is not None
            return targeted_pgd_l2(self.model, x, t, settings=cfg, num_classes=n, mask=mask)
        start, eps = x, cfg.eps
        if cfg.mode in ("shortcut", "shortcut+poison"):
            # the split: of eps^2 under L2 (a shortcut and a crafted part that are about
            # orthogonal then add up to about eps), of eps under Linf (amplitudes add); the
            # combiner's projection re-checks the total either way
            share = 1.0 if cfg.mode == "shortcut" else cfg.shortcut_share
            s_eps, p_eps = (
                (share**0.5 * cfg.eps, (1.0 - share) ** 0.5 * cfg.eps)
                if cfg.norm == "l2"
                else (share * cfg.eps, (1.0 - share) * cfg.eps)
            )
            delta = shortcut_delta(
                self.key.secret.get_secret_value(),
                targets,
                (int(x.shape[-2]), int(x.shape[-1])),
                eps=s_eps,
                norm=cfg.norm,
                patch=cfg.shortcut_patch,
                mask=mask,
                device=self.device,
            )
            start, eps = _within_box(x, delta, s_eps, cfg.norm), p_eps
        if cfg.mode == "shortcut":
            if self.model is None:
                nan = torch.full((x.shape[0],), float("nan"))
                return PGDOutput(images=start, loss=nan, reached=torch.zeros_like(nan).bool())
            with torch.no_grad():
                logits = self.model(start).float()
            loss = torch.nn.functional.cross_entropy(logits, t, reduction="none")
            return PGDOutput(images=start, loss=loss, reached=logits.argmax(1) == t)
        assert self.model is not None
        return craft_poison(
            [self.model, *self.ensemble],
            start,
            t,
            settings=cfg,
            eps=eps,
            mask=mask,
            num_classes=n,
        )

    def encrypt(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        masks: np.ndarray | None = None,
        metrics: bool = True,
    ) -> EncryptionResult:
        """Encrypt a batch (classes may be mixed) in one batched PGD call.

        Args:
            images: (B, H, W) float32 in [0, 1].
            labels: B class indices (true labels, or :meth:`predict`'s for unlabelled data).
            masks: (B, H, W) bool foreground (e.g. the case's brain mask); default: each
                image's own (:func:`foreground_mask`).
            metrics: compute PSNR and SSIM (whole and foreground); ``False`` leaves them
                ``None`` (the archive job measures them on the quantised release in its
                write stage, on the CPU while the actor's device runs the next batch).

        Raises:
            ImageFormatError: images of the wrong shape, type or range, or masks of another
                shape.
            EncryptionKeyError: a label outside the key's classes.
        """
        arr = self._batch(images)
        b = arr.shape[0]
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape[0] != b:
            raise ModelError(f"expected {b} labels, got {y.shape[0]}")
        n = self.key.num_classes
        if y.size and (y.min() < 0 or y.max() >= n):
            raise EncryptionKeyError(
                f"labels must lie in range({n}) for key {self.key.fingerprint}, got "
                f"{sorted(set(y.tolist()) - set(range(n)))}"
            )
        try:
            fg = foreground_masks(arr, masks)
        except ValueError as exc:
            raise ImageFormatError(str(exc)) from None
        targets = [self.key.targets[int(c)] for c in y]
        rows = np.concatenate([np.full(len(t), i) for i, t in enumerate(targets)])
        flat_targets = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
        x0 = torch.tensor(arr).unsqueeze(1).to(self.device)  # (B, 1, H, W)
        mask = (
            torch.from_numpy(fg).unsqueeze(1).to(self.device, torch.float32)
            if self.settings.foreground
            else None
        )
        rows_t = torch.from_numpy(rows).to(self.device)
        out = self._perturb(
            x0[rows_t], flat_targets, None if mask is None else mask[rows_t].contiguous()
        )
        adv = out.images.float()
        reached = out.reached.cpu().numpy()
        released = torch.empty_like(x0)
        success = np.zeros(b, dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum([len(t) for t in targets])])
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            k = len(self.key.targets[int(c)])
            sel = torch.from_numpy(
                np.concatenate([np.arange(starts[i], starts[i] + k) for i in idx])
            )
            per_target = adv[sel.to(self.device)].reshape(len(idx), k, *x0.shape[1:])
            idx_t = torch.from_numpy(idx).to(self.device)
            released[idx_t] = combine(
                self.key.combiner,
                x0[idx_t],
                per_target,
                self.key.combiner_params[int(c)],
                eps=self.settings.eps,
                norm=self.settings.norm,
                mask=None if mask is None else mask[idx_t],
                cap=self.settings.linf_cap,
            )
            success[idx] = reached[sel.numpy()].reshape(len(idx), k).mean(axis=1)
        if self.model is None:
            success[:] = np.nan  # no model to ask: shortcut mode run without one
        if self.settings.mode == "unlearnable":
            # no new black pixels: error-minimizing noise pushed dark anatomy to exactly 0 and
            # a reader could count them (the study's blinding check: black-pixel AUC 0.60 in
            # the demo). A pixel stays at or above min(original, one 8-bit level); that only
            # moves it toward its original, so the budget still holds. Other modes are left
            # as they were (their outputs stay bit for bit what they were).
            released = torch.maximum(released, x0.clamp(max=_DARK_FLOOR))
        rel_t = released[:, 0].float()
        # record metrics batched on the device, before the one copy of the release to the
        # host (scikit-image's formulas, float64: _metrics_torch)
        fg_t = mask[:, 0] if mask is not None else torch.from_numpy(fg).to(self.device)
        if metrics:
            met = {k: v.cpu().numpy() for k, v in batch_metrics(x0[:, 0], rel_t, fg_t).items()}
        else:
            dist = l2_linf(x0[:, 0], rel_t)
            met = {"l2": dist[0].cpu().numpy(), "linf": dist[1].cpu().numpy()}
        rel = rel_t.contiguous().cpu().numpy()
        logger.debug(
            "encrypted %d images (%d PGD rows): mean L2 %.4f, mean target success %.3f",
            b,
            rows.size,
            float(met["l2"].mean()),
            float(success.mean()),
        )
        return EncryptionResult(
            images=rel,
            l2=met["l2"],
            linf=met["linf"],
            target_success=success,
            targets=list(targets),
            foreground=fg,
            psnr=met.get("psnr"),
            ssim=met.get("ssim"),
            psnr_foreground=met.get("psnr_foreground"),
            ssim_foreground=met.get("ssim_foreground"),
        )
