"""Where the study's cases come from: an archive job's dest prefix, or two folders.

Archive dest prefix (local folder)::

    <prefix>/<case>/encrypted.png           the protected slice
    <prefix>/<case>/record.json             carries the case label
    <prefix>/_originals/<case>/original.png the original slice (job run with originals)

``record.json``'s label is read from ``label_name`` (the archive job's ``CaseRecord``), else
``class_name``, else ``label`` (class name or index into the study's class list). A record
whose ``label_source`` is ``"predicted"`` is refused: the model's guess is not ground truth.
A labels CSV (``case_id,label``) overrides the records.

Two folders: ``<originals>/<case>.png`` and ``<protected>/<case>.png`` with the same case
IDs, and a labels CSV (``case_id,label``; label = class name or class index).

Every problem found (a case missing one version, no label, an unknown label, unreadable
files) is collected and reported at once in one :class:`StudyError`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcrypt.errors import StudyError
from medcrypt.study._images import read_slice_png

__all__ = ["StudyCase", "cases_from_archive", "cases_from_folders", "read_labels_csv"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyCase:
    """One patient: both versions of the slice (float32 (H, W) in [0, 1]) and the truth."""

    case_id: str
    label: str
    original: np.ndarray
    protected: np.ndarray


def _label_name(raw: object, classes: Sequence[str]) -> str | None:
    """A class name from a class name or a class index; None if it names no class."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return classes[raw] if 0 <= raw < len(classes) else None
    if isinstance(raw, str):
        text = raw.strip()
        folded = {c.casefold(): c for c in classes}
        if text.casefold() in folded:
            return folded[text.casefold()]
        if text.isdigit():
            return _label_name(int(text), classes)
    return None


def read_labels_csv(path: Path, classes: Sequence[str]) -> dict[str, str]:
    """Read ``case_id,label`` rows (header required); every bad row is reported at once."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StudyError(f"cannot read labels CSV: {exc}", uri=str(path)) from exc
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"case_id", "label"} <= set(reader.fieldnames):
        raise StudyError(
            f"labels CSV must have the header 'case_id,label', got {reader.fieldnames}",
            uri=str(path),
        )
    labels: dict[str, str] = {}
    seen: set[str] = set()
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        case_id = (row.get("case_id") or "").strip()
        raw = (row.get("label") or "").strip()
        name = _label_name(raw, classes)
        if not case_id:
            problems.append(f"line {line}: empty case_id")
        elif case_id in seen:
            problems.append(f"line {line}: case {case_id!r} is listed twice")
        elif name is None:
            problems.append(
                f"line {line}: label {raw!r} of case {case_id!r} is not one of {list(classes)} "
                f"or a class index 0..{len(classes) - 1}"
            )
        else:
            labels[case_id] = name
        seen.add(case_id)
    if problems:
        raise StudyError("invalid labels CSV:\n  " + "\n  ".join(problems), uri=str(path))
    return labels


def _load_pair(
    case_id: str, original: Path, protected: Path, label: str, problems: list[str]
) -> StudyCase | None:
    try:
        a = read_slice_png(original, case_id=case_id)
        b = read_slice_png(protected, case_id=case_id)
    except StudyError as exc:
        problems.append(str(exc))
        return None
    if a.shape != b.shape:
        problems.append(
            f"case {case_id!r}: original is {a.shape} but protected is {b.shape}; "
            "both versions must have the same shape"
        )
        return None
    return StudyCase(case_id=case_id, label=label, original=a, protected=b)


def cases_from_archive(
    prefix: Path, classes: Sequence[str], *, labels_csv: Path | None = None
) -> list[StudyCase]:
    """Both versions and the label of every case in an archive job's dest prefix."""
    prefix = Path(prefix)
    if not prefix.is_dir():
        raise StudyError("archive dest prefix is not a folder", uri=str(prefix))
    overrides = read_labels_csv(labels_csv, classes) if labels_csv is not None else {}
    case_dirs = sorted(
        p for p in prefix.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )
    problems: list[str] = []
    cases: list[StudyCase] = []
    for case_dir in case_dirs:
        case_id = case_dir.name
        protected = case_dir / "encrypted.png"
        original = prefix / "_originals" / case_id / "original.png"
        if not protected.is_file():
            problems.append(f"case {case_id!r}: no {protected} (only PNG archives can be read)")
            continue
        if not original.is_file():
            problems.append(
                f"case {case_id!r}: no original at {original} (run the archive job with "
                "originals kept)"
            )
            continue
        label = overrides.get(case_id) or _record_label(case_dir / "record.json", classes, problems)
        if label is None:
            continue
        pair = _load_pair(case_id, original, protected, label, problems)
        if pair is not None:
            cases.append(pair)
    if not case_dirs:
        problems.append("no case folders found")
    if problems:
        raise StudyError(
            f"{len(problems)} problem(s) reading the archive:\n  " + "\n  ".join(problems),
            uri=str(prefix),
        )
    logger.info("read %d cases from archive %s", len(cases), prefix)
    return cases


def _record_label(path: Path, classes: Sequence[str], problems: list[str]) -> str | None:
    case_id = path.parent.name
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"case {case_id!r}: no record.json and no label in a labels CSV")
        return None
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"case {case_id!r}: unreadable record.json: {exc}")
        return None
    if not isinstance(record, dict):
        problems.append(f"case {case_id!r}: record.json is not a JSON object")
        return None
    if record.get("label_source") == "predicted":
        problems.append(
            f"case {case_id!r}: record.json's label was predicted by a model, not given; a "
            "reader study needs ground truth: pass a labels CSV"
        )
        return None
    # The class name first: a class index only means something in the job's own class list.
    for field in ("label_name", "class_name", "label"):
        if field in record:
            name = _label_name(record[field], classes)
            if name is None:
                problems.append(
                    f"case {case_id!r}: record.json {field}={record[field]!r} is not one of "
                    f"{list(classes)} or a class index"
                )
            return name
    problems.append(f"case {case_id!r}: record.json has no 'label' field")
    return None


def cases_from_folders(
    originals: Path, protected: Path, labels_csv: Path, classes: Sequence[str]
) -> list[StudyCase]:
    """Both versions from ``<originals>/<case>.png`` and ``<protected>/<case>.png``."""
    originals, protected = Path(originals), Path(protected)
    for folder in (originals, protected):
        if not folder.is_dir():
            raise StudyError("expected a folder of <case>.png slices", uri=str(folder))
    labels = read_labels_csv(labels_csv, classes)
    orig_ids = {p.stem for p in originals.glob("*.png")}
    prot_ids = {p.stem for p in protected.glob("*.png")}
    problems: list[str] = []
    for cid in sorted(orig_ids - prot_ids):
        problems.append(f"case {cid!r}: original present but no protected slice in {protected}")
    for cid in sorted(prot_ids - orig_ids):
        problems.append(f"case {cid!r}: protected slice present but no original in {originals}")
    both = sorted(orig_ids & prot_ids)
    for cid in both:
        if cid not in labels:
            problems.append(f"case {cid!r}: no label in {labels_csv}")
    if not both:
        problems.append("no case has both versions")
    cases: list[StudyCase] = []
    for cid in both:
        if cid not in labels:
            continue
        pair = _load_pair(
            cid, originals / f"{cid}.png", protected / f"{cid}.png", labels[cid], problems
        )
        if pair is not None:
            cases.append(pair)
    if problems:
        raise StudyError(
            f"{len(problems)} problem(s) reading the two folders:\n  " + "\n  ".join(problems)
        )
    logger.info("read %d cases from %s and %s", len(cases), originals, protected)
    return cases
