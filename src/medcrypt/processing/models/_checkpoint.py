"""Model checkpoints: architecture, class names, normalisation, history and a content hash."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcrypt.errors import ModelError
from medcrypt.processing.models._nets import Classifier, Normalisation, build_model
from medcrypt.processing.models._training import EpochRecord

__all__ = ["LoadedModel", "load_checkpoint", "save_checkpoint", "state_dict_hash"]

_FORMAT = "medcrypt-checkpoint"
_VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint read back by :func:`load_checkpoint`; ``model`` is in eval mode."""

    model: Classifier
    arch: str
    width: int
    in_channels: int
    class_names: tuple[str, ...]
    normalisation: Normalisation
    content_hash: str
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def state_dict_hash(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    class_names: Sequence[str],
    width: int,
    normalisation: Normalisation | Mapping[str, Any] | None = None,
    history: Sequence[EpochRecord] | None = None,
    in_channels: int = 1,
) -> str:
    """Write ``model`` to ``path`` (atomically) and return its content hash.

    ``normalisation`` defaults to the model's own (:class:`Classifier`); when given it must
    agree with what the model applies, since the model applies it itself.
    """
    p = Path(path)
    if isinstance(model, Classifier):
        own = model.normalisation
        if normalisation is not None:
            norm = Normalisation.model_validate(
                normalisation.model_dump()
                if isinstance(normalisation, Normalisation)
                else dict(normalisation)
            )
            if norm != own:
                raise ModelError(
                    f"normalisation {norm} does not match the one the model applies ({own})",
                    uri=str(p),
                )
        norm = own
        in_channels = model.in_channels
        if len(class_names) != model.num_classes:
            raise ModelError(
                f"model has {model.num_classes} outputs but {len(class_names)} class names "
                f"were given",
                uri=str(p),
            )
    elif normalisation is None:
        norm = Normalisation()
    else:
        norm = Normalisation.model_validate(
            normalisation.model_dump()
            if isinstance(normalisation, Normalisation)
            else dict(normalisation)
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = state_dict_hash(state)
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "arch": arch,
        "width": int(width),
        "in_channels": int(in_channels),
        "class_names": list(class_names),
        "normalisation": norm.model_dump(mode="json"),
        "history": [r.model_dump(mode="json") for r in (history or [])],
        "content_hash": digest,
        "state_dict": state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def load_checkpoint(path: str | Path, *, map_location: str = "cpu") -> LoadedModel:
    """Read a checkpoint written by :func:`save_checkpoint`, verify it, rebuild the model.

    Raises:
        ModelError: the file is missing, not a medcrypt checkpoint, corrupt, or its weights
            do not match the recorded content hash or architecture.
    """
    p = Path(path)
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError("model checkpoint not found", uri=str(p)) from exc
    except Exception as exc:  # torch raises many types for garbage input
        raise ModelError(
            f"not a readable medcrypt model checkpoint ({type(exc).__name__}: {exc})",
            uri=str(p),
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ModelError(
            f"expected a {_FORMAT!r} file, got a torch file without that format tag", uri=str(p)
        )
    if payload.get("version") != _VERSION:
        raise ModelError(
            f"expected checkpoint version {_VERSION}, got {payload.get('version')!r}", uri=str(p)
        )
    try:
        arch = str(payload["arch"])
        width = int(payload["width"])
        in_channels = int(payload["in_channels"])
        class_names = tuple(str(c) for c in payload["class_names"])
        norm = Normalisation.model_validate(payload["normalisation"])
        history = [EpochRecord.model_validate(r) for r in payload["history"]]
        recorded = str(payload["content_hash"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"checkpoint metadata is incomplete or invalid: {exc}", uri=str(p)
        ) from exc
    actual = state_dict_hash(state)
    if actual != recorded:
        raise ModelError(
            f"checkpoint weights do not match their content hash (recorded {recorded}, "
            f"computed {actual}): the file is corrupt or was modified",
            uri=str(p),
        )
    try:
        model = build_model(arch, len(class_names), in_channels=in_channels, width=width)
        model.load_state_dict(state, strict=True)
    except (ModelError, RuntimeError) as exc:
        raise ModelError(
            f"checkpoint weights do not fit a {arch} of width {width} with "
            f"{len(class_names)} classes: {exc}",
            uri=str(p),
        ) from exc
    if model.normalisation != norm:
        raise ModelError(
            f"recorded normalisation {norm} differs from the weights' {model.normalisation}",
            uri=str(p),
        )
    model.to(map_location)
    model.eval()
    return LoadedModel(
        model=model,
        arch=arch,
        width=width,
        in_channels=in_channels,
        class_names=class_names,
        normalisation=norm,
        content_hash=actual,
        history=history,
    )
