"""Fixtures for the reader-study tests: phantom cases on disk and sheet-filling helpers."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from medcrypt.medical import CLASS_NAMES, encode_png16, make_phantom_slices
from medcrypt.study import StudyConfig, cases_from_folders, create_study
from medcrypt.study._create import CreatedStudy

READERS = ("alice", "bob", "carol")
START = dt.date(2026, 12, 1)


@dataclass
class PhantomFolders:
    originals: Path
    protected: Path
    labels: Path
    truth: dict[str, str]


def write_phantom_folders(root: Path, *, n_per_class: int = 2, size: int = 32) -> PhantomFolders:
    """Original phantoms and 'protected' versions (original + small seeded noise) as PNGs."""
    images, labels = make_phantom_slices(n_per_class, size=size, seed=7)
    rng = np.random.default_rng(11)
    originals, protected = root / "originals", root / "protected"
    originals.mkdir(parents=True)
    protected.mkdir(parents=True)
    truth: dict[str, str] = {}
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        case = f"case{i:03d}"
        noisy = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)
        (originals / f"{case}.png").write_bytes(encode_png16(img))
        (protected / f"{case}.png").write_bytes(encode_png16(noisy))
        truth[case] = CLASS_NAMES[int(lab)]
    labels_csv = root / "labels.csv"
    labels_csv.write_text(
        "case_id,label\n" + "".join(f"{c},{t}\n" for c, t in truth.items()), encoding="utf-8"
    )
    return PhantomFolders(originals, protected, labels_csv, truth)


def make_config(**overrides: object) -> StudyConfig:
    data: dict[str, object] = {
        "name": "phantom-study",
        "classes": CLASS_NAMES,
        "readers": READERS,
        "design": "counterbalanced",
        "seed": 1234,
        "washout_days": 21,
        "start_date": START,
        "non_inferiority_margin": 0.1,
    }
    data.update(overrides)
    return StudyConfig.model_validate(data)


def fill_sheet(path: Path, answers: Mapping[str, str], out: Path | None = None) -> Path:
    """Write ``answers`` (image_id -> diagnosis) into the sheet's diagnosis column."""
    lines = path.read_text(encoding="utf-8").splitlines()
    result = []
    header_seen = False
    for line in lines:
        if line.startswith("#"):
            result.append(line)
            continue
        if not header_seen:
            header_seen = True
            result.append(line)
            continue
        cells = next(csv.reader([line]))
        cells[4] = answers.get(cells[3], "")
        result.append(",".join(cells))
    target = out or path
    target.write_text("\n".join(result) + "\n", encoding="utf-8")
    return target


@pytest.fixture
def phantoms(tmp_path: Path) -> PhantomFolders:
    return write_phantom_folders(tmp_path / "src")


@pytest.fixture
def make_study(
    tmp_path: Path, phantoms: PhantomFolders
) -> Callable[..., tuple[CreatedStudy, StudyConfig]]:
    counter = iter(range(100))

    def make(**overrides: object) -> tuple[CreatedStudy, StudyConfig]:
        cfg = make_config(**overrides)
        cases = cases_from_folders(
            phantoms.originals, phantoms.protected, phantoms.labels, cfg.classes
        )
        made = create_study(cfg, cases, tmp_path / f"study{next(counter)}")
        return made, cfg

    return make


@dataclass
class Helpers:
    fill_sheet: Callable[..., Path]
    make_config: Callable[..., StudyConfig]
    write_phantom_folders: Callable[..., PhantomFolders]
    readers: tuple[str, ...] = READERS
    start: dt.date = START


@pytest.fixture
def helpers() -> Helpers:
    """Plain helper functions (test modules cannot import this conftest by name)."""
    return Helpers(fill_sheet, make_config, write_phantom_folders)
