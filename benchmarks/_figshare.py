"""figshare-btd (real tumour-type MRI, ``../shared/data/figshare-btd``) at a chosen size.

The set's own patient-level ``split`` column decides train and test (never a per-image random
split: slices of one patient are near-copies). Images are 8-bit greyscale PNGs of 256x256,
reduced here by area averaging (Pillow BOX, as the set's builder reduced 512 to 256) and scaled
to [0, 1]. A reduced copy is cached as ``.npz`` under ``--cache`` (a tmp folder by default) so
that repeated runs do not decode 2,603 PNGs each time; the cache is keyed by size and by the
SHA-256 of ``labels.csv``.

Imported as ``from _figshare import ...`` (benchmarks run as scripts from the repository root).
"""

from __future__ import annotations

import csv
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "figshare-btd"
CLASSES = ("glioma", "meningioma", "pituitary")


@dataclass(frozen=True)
class Figshare:
    """The train and test splits, (N, size, size) float32 in [0, 1], labels in CLASSES order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = CLASSES


def _rows(root: Path) -> list[dict[str, str]]:
    path = root / "labels.csv"
    if not path.is_file():
        raise SystemExit(f"{root}: no labels.csv (the figshare-btd folder, see ../shared/data)")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _read(root: Path, row: dict[str, str], size: int) -> np.ndarray:
    path = root / row["split"] / row["class"] / f"{row['id']}.png"
    with Image.open(path) as im:
        grey = im.convert("L")
        if grey.size != (size, size):
            grey = grey.resize((size, size), Image.Resampling.BOX)
        return np.asarray(grey, dtype=np.float32) / 255.0


def load_figshare(
    root: Path = DATA,
    *,
    size: int = 32,
    limit: int | None = None,
    cache: Path | None = None,
) -> Figshare:
    """The set's train and test split at ``size`` pixels.

    Args:
        root: the figshare-btd folder.
        size: output side (area averaged from 256).
        limit: keep the first ``limit`` images of each class in each split (tiny test runs);
            ``None`` keeps all. Uncached.
        cache: folder for the reduced ``.npz`` (default: the system's tmp folder).
    """
    rows = _rows(root)
    bad = sorted({r["class"] for r in rows} - set(CLASSES))
    if bad:
        raise SystemExit(f"{root}/labels.csv: unknown classes {bad}")
    digest = hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest()[:12]
    cached = (cache or Path(tempfile.gettempdir())) / f"figshare-btd-{size}-{digest}.npz"
    if limit is None and cached.is_file():
        with np.load(cached) as z:
            return Figshare(z["x_train"], z["y_train"], z["x_test"], z["y_test"])
    splits: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    taken: dict[tuple[str, str], int] = {}
    for row in rows:
        if row["split"] not in splits:
            continue  # the held-back split is not in the folder
        k = (row["split"], row["class"])
        if limit is not None and taken.get(k, 0) >= limit:
            continue
        taken[k] = taken.get(k, 0) + 1
        xs, ys = splits[row["split"]]
        xs.append(_read(root, row, size))
        ys.append(CLASSES.index(row["class"]))
    data = Figshare(
        x_train=np.stack(splits["train"][0]),
        y_train=np.asarray(splits["train"][1], dtype=np.int64),
        x_test=np.stack(splits["test"][0]),
        y_test=np.asarray(splits["test"][1], dtype=np.int64),
    )
    if limit is None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cached,
            x_train=data.x_train,
            y_train=data.y_train,
            x_test=data.x_test,
            y_test=data.y_test,
        )
    return data


def load_boxes(
    root: Path = DATA, *, size: int = 32, limit: int | None = None
) -> dict[str, list[list[tuple[int, int, int, int]]]]:
    """Each image's tumour box(es) in pixels ``(x0, y0, x1, y1)`` at ``size``, per split, in
    :func:`load_figshare`'s order (labels.csv's ``tumour_boxes``: ``cx cy w h`` fractions,
    several separated by ``;``; an empty field gives no box)."""
    out: dict[str, list[list[tuple[int, int, int, int]]]] = {"train": [], "test": []}
    taken: dict[tuple[str, str], int] = {}
    for row in _rows(root):
        if row["split"] not in out:
            continue
        k = (row["split"], row["class"])
        if limit is not None and taken.get(k, 0) >= limit:
            continue
        taken[k] = taken.get(k, 0) + 1
        boxes = []
        for part in (row.get("tumour_boxes") or "").split(";"):
            vals = [float(v) for v in part.split()]
            if len(vals) != 4:
                continue
            cx, cy, w, h = (v * size for v in vals)
            x0, y0 = max(0, int(cx - w / 2)), max(0, int(cy - h / 2))
            boxes.append(
                (x0, y0, min(size, math.ceil(cx + w / 2)), min(size, math.ceil(cy + h / 2)))
            )
        out[row["split"]].append(boxes)
    return out
