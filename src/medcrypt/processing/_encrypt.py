"""The Encryptor: batched targeted PGD for every target of every image, then the combiner."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medcrypt.errors import EncryptionKeyError, ImageFormatError, ModelError
from medcrypt.processing._combiners import combine
from medcrypt.processing._keys import EncryptionKey
from medcrypt.processing._pgd import compute_summary, prepare_for_pgd, targeted_pgd_l2
from medcrypt.processing._settings import PGDSettings, resolve_device
from medcrypt.processing._training import predict

__all__ = ["EncryptionResult", "Encryptor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncryptionResult:
    """Output of :meth:`Encryptor.encrypt`, one entry per input image.

    Attributes:
        images: (B, H, W) float32 released images in [0, 1], each within eps (L2) of its input.
        l2, linf: (B,) float64 distance of each released image to its input.
        target_success: (B,) fraction of the image's targets that its per-target PGD outputs
            reached (model predicts the target).
        targets: per image, the key's targets for its label.
    """

    images: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    target_success: np.ndarray
    targets: list[tuple[int, ...]]


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


class Encryptor:
    """Encrypt batches of slices with a key and its base model.

    Args:
        model: the base classifier over [0, 1] images (e.g. ``load_checkpoint(...).model``).
            The Encryptor works on a private copy (:func:`prepare_for_pgd`).
        key: the secret key; its class count must match the model's outputs.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        settings: PGD settings overriding the key's (``key.pgd`` when None).

    Raises:
        EncryptionKeyError: the key does not fit the model.
    """

    def __init__(
        self,
        model: nn.Module,
        key: EncryptionKey,
        *,
        device: str = "auto",
        settings: PGDSettings | None = None,
    ) -> None:
        self.key = key
        self.settings = settings or key.pgd
        self.device = torch.device(resolve_device(device))
        self.in_channels = int(getattr(model, "in_channels", 1))
        if self.in_channels != 1:
            raise ModelError(
                f"the Encryptor works on greyscale slices (1 input channel), model has "
                f"{self.in_channels}"
            )
        key.check_model(_model_classes(model, self.in_channels))
        # a private inference copy (batch norm folded, on device, channels_last if selected):
        # the caller's model is left as it was
        self.model = prepare_for_pgd(model, self.settings, self.device)
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
        return predict(self.model, arr, device=str(self.device))

    def encrypt(self, images: np.ndarray, labels: Sequence[int] | np.ndarray) -> EncryptionResult:
        """Encrypt a batch (classes may be mixed) in one batched PGD call.

        Args:
            images: (B, H, W) float32 in [0, 1].
            labels: B class indices (true labels, or :meth:`predict`'s for unlabelled data).

        Raises:
            ImageFormatError: images of the wrong shape, type or range.
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
        targets = [self.key.targets[int(c)] for c in y]
        rows = np.concatenate([np.full(len(t), i) for i, t in enumerate(targets)])
        flat_targets = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
        x0 = torch.tensor(arr).unsqueeze(1).to(self.device)  # (B, 1, H, W)
        out = targeted_pgd_l2(
            self.model,
            x0[torch.from_numpy(rows).to(self.device)],
            torch.from_numpy(flat_targets).to(self.device),
            settings=self.settings,
            num_classes=n,
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
            )
            success[idx] = reached[sel.numpy()].reshape(len(idx), k).mean(axis=1)
        rel = released[:, 0].contiguous().cpu().numpy().astype(np.float32)
        diff = rel.astype(np.float64) - arr.astype(np.float64)
        l2 = np.sqrt((diff**2).reshape(b, -1).sum(axis=1))
        linf = np.abs(diff).reshape(b, -1).max(axis=1)
        logger.debug(
            "encrypted %d images (%d PGD rows): mean L2 %.4f, mean target success %.3f",
            b,
            rows.size,
            float(l2.mean()),
            float(success.mean()),
        )
        return EncryptionResult(
            images=rel, l2=l2, linf=linf, target_success=success, targets=list(targets)
        )
