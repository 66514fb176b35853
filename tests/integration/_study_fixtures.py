"""Small phantom reader studies on disk for the ``study serve`` tests (no torch, no Ray)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medcrypt.medical import CLASS_NAMES, encode_png16, make_phantom_slices
from medcrypt.study import StudyConfig, cases_from_folders, create_study

__all__ = ["make_phantom_study"]


def make_phantom_study(
    root: Path,
    readers: Sequence[str],
    *,
    n_per_class: int = 2,
    size: int = 32,
    start: dt.date | None = None,
    washout_days: int = 21,
    allow_revisions: bool = False,
) -> Path:
    """A counterbalanced study of ``5 * n_per_class`` phantom cases in ``root/study``."""
    images, labels = make_phantom_slices(n_per_class, size=size, seed=7)
    rng = np.random.default_rng(11)
    originals, protected = root / "originals", root / "protected"
    originals.mkdir(parents=True)
    protected.mkdir(parents=True)
    rows = ["case_id,label"]
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        noisy = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)
        (originals / f"case{i:03d}.png").write_bytes(encode_png16(img))
        (protected / f"case{i:03d}.png").write_bytes(encode_png16(noisy))
        rows.append(f"case{i:03d},{CLASS_NAMES[int(lab)]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = StudyConfig.model_validate(
        {
            "name": "serve-study",
            "classes": CLASS_NAMES,
            "readers": tuple(readers),
            "design": "counterbalanced",
            "seed": 99,
            "washout_days": washout_days,
            "start_date": start or dt.datetime.now(dt.UTC).date(),
            "non_inferiority_margin": 0.1,
            "allow_revisions": allow_revisions,
        }
    )
    cases = cases_from_folders(originals, protected, root / "labels.csv", config.classes)
    create_study(config, cases, root / "study")
    return root / "study"
