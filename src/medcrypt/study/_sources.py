"""Where the study's cases come from: an archive job's dest prefix, or two folders.

Archive dest prefix (a local folder or ``s3://bucket/prefix``, read through
:func:`medcrypt.storage.open_store`)::

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
from medcrypt.study._images import decode_slice

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


def _pair(
    case_id: str,
    original: tuple[bytes, str],
    protected: tuple[bytes, str],
    label: str,
    problems: list[str],
) -> StudyCase | None:
    """Decode both versions ((bytes, where) each); record any problem and return None."""
    try:
        a = decode_slice(original[0], case_id=case_id, uri=original[1])
        b = decode_slice(protected[0], case_id=case_id, uri=protected[1])
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
    prefix: str | Path,
    classes: Sequence[str],
    *,
    labels_csv: Path | None = None,
    endpoint_url: str | None = None,
) -> list[StudyCase]:
    """Both versions and the label of every case in an archive job's dest prefix.

    ``prefix`` is a local folder or an ``s3://bucket/prefix`` URI, read through
    :func:`medcrypt.storage.open_store` (``endpoint_url`` for S3-compatible servers).
    """
    from medcrypt.errors import StorageError
    from medcrypt.storage import is_s3_uri, open_store

    uri = str(prefix)
    if not is_s3_uri(uri) and not Path(uri).is_dir():
        raise StudyError("archive dest prefix is not a folder", uri=uri)
    overrides = read_labels_csv(labels_csv, classes) if labels_csv is not None else {}
    try:
        store = open_store(uri, endpoint_url=endpoint_url)
        keys = {info.key for info in store.list()}
    except StorageError as exc:
        raise StudyError(f"cannot list the archive: {exc}", uri=uri) from exc
    case_ids = sorted(
        {k.split("/", 1)[0] for k in keys if "/" in k and not k.startswith(("_", "."))}
    )
    problems: list[str] = []
    cases: list[StudyCase] = []

    def get(key: str, case_id: str) -> bytes | None:
        try:
            return store.get(key)
        except StorageError as exc:
            problems.append(f"case {case_id!r}: cannot read {key}: {exc}")
            return None

    for case_id in case_ids:
        protected_key = f"{case_id}/encrypted.png"
        original_key = f"_originals/{case_id}/original.png"
        record_key = f"{case_id}/record.json"
        if protected_key not in keys:
            problems.append(f"case {case_id!r}: no {protected_key} (only PNG archives can be read)")
            continue
        if original_key not in keys:
            problems.append(
                f"case {case_id!r}: no original at {original_key} (run the archive job with "
                "originals kept)"
            )
            continue
        label = overrides.get(case_id)
        if label is None:
            if record_key not in keys:
                problems.append(f"case {case_id!r}: no record.json and no label in a labels CSV")
                continue
            record = get(record_key, case_id)
            if record is None:
                continue
            label = _record_label(case_id, record, classes, problems)
        if label is None:
            continue
        data_o, data_p = get(original_key, case_id), get(protected_key, case_id)
        if data_o is None or data_p is None:
            continue
        pair = _pair(case_id, (data_o, original_key), (data_p, protected_key), label, problems)
        if pair is not None:
            cases.append(pair)
    if not case_ids:
        problems.append("no case folders found")
    if problems:
        raise StudyError(
            f"{len(problems)} problem(s) reading the archive:\n  " + "\n  ".join(problems),
            uri=uri,
        )
    logger.info("read %d cases from archive %s", len(cases), uri)
    return cases


def _record_label(
    case_id: str, data: bytes, classes: Sequence[str], problems: list[str]
) -> str | None:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
        paths = (originals / f"{cid}.png", protected / f"{cid}.png")
        try:
            blobs = [p.read_bytes() for p in paths]
        except OSError as exc:
            problems.append(f"case {cid!r}: cannot read slice: {exc}")
            continue
        pair = _pair(
            cid, (blobs[0], str(paths[0])), (blobs[1], str(paths[1])), labels[cid], problems
        )
        if pair is not None:
            cases.append(pair)
    if problems:
        raise StudyError(
            f"{len(problems)} problem(s) reading the two folders:\n  " + "\n  ".join(problems)
        )
    logger.info("read %d cases from %s and %s", len(cases), originals, protected)
    return cases
