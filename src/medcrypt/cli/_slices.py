"""Slice folders: what ``train`` and ``encrypt-slices`` read and ``encrypt-slices`` writes.

Slice folders (also written by ``medcrypt phantoms``, read by ``evaluate`` and ``audit``)
hold one sub-folder per class::

    DIR/<class_name>/<name>.png     greyscale PNG (16-bit: value / 65535; 8-bit: / 255)
    DIR/<class_name>/<name>.npy     or a float (H, W) array in [0, 1]

Classes are ordered as :data:`medcrypt.medical.CLASS_NAMES` when the folders are exactly those
names, else sorted by name (``--classes`` fixes another order). Other files are ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError, ImageFormatError

__all__ = [
    "LAYOUT_HELP",
    "SliceFolder",
    "SliceRecord",
    "class_order",
    "read_slice_folder",
    "write_slice",
]

logger = logging.getLogger(__name__)

_EXTS = (".png", ".npy")

LAYOUT_HELP = (
    "DIR holds one sub-folder per class, each with 2D slices as 16-bit greyscale .png "
    "(value/65535) or float .npy arrays in [0, 1]: DIR/<class_name>/<name>.png|.npy."
)


# -- slice folders -------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceFolder:
    """A labelled slice folder read into memory."""

    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64 index into class_names
    class_names: tuple[str, ...]
    paths: tuple[Path, ...]  # relative to the folder root, e.g. meningioma/00003.png


def _read_one(path: Path) -> np.ndarray:
    from medcrypt.medical import decode_png16

    if path.suffix == ".png":
        try:
            arr = decode_png16(path.read_bytes())
        except ImageFormatError as exc:
            raise ImageFormatError(exc.message, uri=str(path)) from exc
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageFormatError(f"not a readable .npy array: {exc}", uri=str(path)) from exc
        if not np.issubdtype(arr.dtype, np.floating):
            raise ImageFormatError(
                f"expected a float array in [0, 1], got {arr.dtype}", uri=str(path)
            )
    if arr.ndim != 2:
        raise ImageFormatError(f"expected a 2D slice, got shape {arr.shape}", uri=str(path))
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ImageFormatError(
            f"expected values in [0, 1], got [{np.nanmin(arr)}, {np.nanmax(arr)}]", uri=str(path)
        )
    return arr.astype(np.float32)


def class_order(folders: Sequence[str], classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class order for a set of folder names (see the module docstring)."""
    from medcrypt.medical import CLASS_NAMES

    if classes:
        return tuple(classes)
    if set(folders) == set(CLASS_NAMES):
        return tuple(CLASS_NAMES)
    return tuple(sorted(folders))


def read_slice_folder(
    root: Path, *, classes: Sequence[str] | None = None, progress: ProgressCallback | None = None
) -> SliceFolder:
    """Read ``root/<class>/<name>.(png|npy)``; all slices must share one shape.

    Args:
        root: the folder.
        classes: class order to use; folders must be a subset of it. Default: see module doc.

    Raises:
        ConfigError: missing folder, no classes/slices, unknown class folder, mixed shapes.
        ImageFormatError: an unreadable slice (naming the file).
    """
    if not root.is_dir():
        raise ConfigError("slice folder does not exist", uri=str(root))
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ConfigError(f"expected class sub-folders. {LAYOUT_HELP}", uri=str(root))
    names = class_order(folders, classes)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise ConfigError(
            f"class folders {unknown} are not among the classes {list(names)}", uri=str(root)
        )
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(names):
        folder = root / name
        if folder.is_dir():
            files += [(p, c) for p in sorted(folder.iterdir()) if p.suffix in _EXTS]
    if not files:
        raise ConfigError(f"no .png or .npy slices found. {LAYOUT_HELP}", uri=str(root))
    images = []
    for i, (path, _) in enumerate(files):
        images.append(_read_one(path))
        if progress is not None:
            progress(i + 1, len(files), path.parent.name)
    shapes = sorted({a.shape for a in images})
    if len(shapes) != 1:
        raise ConfigError(
            f"all slices must share one shape, found {shapes[:4]}"
            f"{' ...' if len(shapes) > 4 else ''}",
            uri=str(root),
        )
    return SliceFolder(
        images=np.stack(images),
        labels=np.asarray([c for _, c in files], dtype=np.int64),
        class_names=names,
        paths=tuple(p.relative_to(root) for p, _ in files),
    )


def write_slice(
    path: Path,
    image01: np.ndarray,
    *,
    original01: np.ndarray,
    eps: float,
    norm: str = "l2",
    linf_cap: float | None = None,
) -> np.ndarray:
    """Write one released slice as 16-bit PNG (quantised within eps in ``norm``, and within
    the per-pixel ``linf_cap`` where there is one) or float32 .npy. Pixels the protection left
    unchanged are stored exactly as the original's.

    Returns the image exactly as stored, as float64 in [0, 1] (for metrics).
    """
    from medcrypt.medical import encode_png16
    from medcrypt.processing import quantise

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        codes = quantise(image01, original01, eps=eps, levels=65535, norm=norm, linf_cap=linf_cap)
        stored = codes.astype(np.float64) / 65535
        path.write_bytes(encode_png16(stored))
        return stored
    arr = image01.astype(np.float32)
    np.save(path, arr)
    return arr.astype(np.float64)


class SliceRecord(StrictModel):
    """What ``encrypt-slices`` did to one slice. Of the key, only what
    :mod:`medcrypt.processing.protection._release` allows: fingerprint, PGD settings, number
    of targets."""

    source: str
    output: str
    label: int
    label_name: str
    label_source: str  # "folder" or "predicted"
    key_fingerprint: str
    model_hash: str
    pgd: dict[str, Any]
    eps: float
    n_targets: int
    target_success: float | None  # None in shortcut mode (no model asked)
    l2: float
    linf: float
    #: the key's per-pixel cap beside eps (None: none); ``linf`` is within it
    linf_cap: float | None = None
    psnr: float | None  # None when identical (infinite PSNR)
    ssim: float
    #: protection mode, budget norm and whether the budget was confined to the foreground
    #: (recorded; none of them is secret). Defaults: records from before these fields.
    mode: str = "paper"
    norm: str = "l2"
    foreground: bool = False
    #: the anatomy mask's share of the slice, and PSNR / SSIM over it only
    foreground_fraction: float | None = None
    psnr_foreground: float | None = None
    ssim_foreground: float | None = None


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
