"""Build a manifest by walking a source prefix laid out in a known way.

Layouts:

``brats``
    ``<case>/T1c_subtrMeanDivStd.nii.gz`` (image) and ``<case>/OTMultiClass.nii.gz`` (mask),
    as in the BraTS 2015 / DeepMedic redistribution; the case folder may sit at any depth
    (``HGG/<case>/...``). No labels.
``case-folders``
    ``<case>/image.nii.gz`` (or ``image.nii``, or a folder ``<case>/image/`` of DICOM files,
    any non-hidden file directly in it)
    and ``<case>/mask.nii.gz`` (or ``mask.nii``); labels from an optional ``labels.csv``
    (``case_id,label``, label a class name or index) at the root of the source. This is what
    :func:`medcrypt.medical.write_phantom_archive` writes.

The listing is streamed in key order and each case is written as soon as its folder is
complete, so memory holds one case at a time (plus the case ids seen, to refuse duplicates).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from medcrypt.cluster._manifest import CASE_ID_PATTERN, ManifestRow, write_manifest
from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError, ManifestError, ObjectNotFoundError
from medcrypt.storage import ObjectStore, join_uri

__all__ = ["LAYOUTS", "DiscoverSummary", "Layout", "discover"]

logger = logging.getLogger(__name__)

Layout = Literal["brats", "case-folders"]
LAYOUTS: tuple[str, ...] = ("brats", "case-folders")
LABELS_KEY = "labels.csv"
#: At most this many skip reasons are kept in the summary (all are logged at debug).
MAX_REASONS = 1000

_BRATS_IMAGE = ("T1c_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii")
_BRATS_MASK = ("OTMultiClass.nii.gz", "OTMultiClass.nii")
_CF_IMAGE = ("image.nii.gz", "image.nii")
_CF_MASK = ("mask.nii.gz", "mask.nii")
_CF_SERIES = "image"


class DiscoverSummary(StrictModel):
    """What :func:`discover` found.

    Attributes:
        out: where the manifest was written.
        layout: the layout searched for.
        cases: rows written.
        skipped: number of case folders left out.
        reasons: why (at most :data:`MAX_REASONS`), e.g. ``"case7: no mask"``.
    """

    out: str
    layout: str
    cases: int = Field(ge=0)
    skipped: int = Field(ge=0)
    reasons: tuple[str, ...] = ()


class _Case:
    __slots__ = ("folder", "images", "masks", "series_files")

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.images: list[str] = []
        self.masks: list[str] = []
        self.series_files = 0


def _classify(key: str, layout: Layout) -> tuple[str, str] | None:
    """(case folder, role) of a key, or None when the layout does not use it."""
    folder, _, name = key.rpartition("/")
    if not folder:
        return None
    if layout == "brats":
        if name in _BRATS_IMAGE:
            return folder, "image"
        if name in _BRATS_MASK:
            return folder, "mask"
        return None
    if name in _CF_IMAGE:
        return folder, "image"
    if name in _CF_MASK:
        return folder, "mask"
    parent, _, sub = folder.rpartition("/")
    if sub == _CF_SERIES and parent and not name.startswith("."):
        # every (non-hidden) file of the folder: DICOM files are often named by UID or have
        # no extension, so the name says little; the DICOM reader checks the contents
        return parent, "series"
    return None


def discover(
    source_store: ObjectStore,
    *,
    layout: Layout,
    out: str | Path,
    prefix: str = "",
    endpoint_url: str | None = None,
    class_names: Sequence[str] | None = None,
) -> DiscoverSummary:
    """Walk ``source_store`` (under ``prefix``) and write a CSV manifest of its cases to ``out``.

    Keys in the manifest are relative to the store's root, so the manifest is read with
    ``source=source_store.uri``. A case folder missing its image or mask, holding both an
    image file and a DICOM series folder, or whose name is not a valid case id (or repeats
    one) is skipped, with the reason in the summary.

    Args:
        source_store: the source archive.
        layout: ``"brats"`` or ``"case-folders"`` (see the module docstring).
        out: local path or store URI of the ``.csv`` to write.
        prefix: only look under this key prefix of the store.
        endpoint_url: S3 endpoint when ``out`` is an ``s3://`` URI.
        class_names: labels in ``labels.csv`` must be among these (default
            :data:`medcrypt.medical.CLASS_NAMES`).

    Raises:
        ConfigError: unknown layout, or a malformed ``labels.csv`` (ManifestError listing
            every bad line).
    """
    if layout not in LAYOUTS:
        raise ConfigError(
            f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}", field="layout"
        )
    labels = _read_labels(source_store, class_names) if layout == "case-folders" else {}
    reasons: list[str] = []
    counts = {"skipped": 0}

    def skip(case_folder: str, why: str) -> None:
        counts["skipped"] += 1
        text = f"{case_folder}: {why}"
        logger.debug("discover: skipping %s", text)
        if len(reasons) < MAX_REASONS:
            reasons.append(text)

    rows = _Rows(source_store, layout, prefix, labels, skip)
    written = write_manifest(rows, out, endpoint_url=endpoint_url)
    unused = [c for c in labels if c not in rows.labels_used]
    if unused:
        logger.warning(
            "discover: %d case id(s) in %s have no case folder (e.g. %s)",
            len(unused),
            LABELS_KEY,
            ", ".join(unused[:3]),
        )
    logger.info(
        "discover %s (%s): %d cases, %d skipped -> %s",
        source_store.uri,
        layout,
        written,
        counts["skipped"],
        out,
    )
    return DiscoverSummary(
        out=str(out),
        layout=layout,
        cases=written,
        skipped=counts["skipped"],
        reasons=tuple(reasons),
    )


class _Rows(Iterator[ManifestRow]):
    """The streaming grouping of a sorted listing into manifest rows."""

    def __init__(
        self,
        store: ObjectStore,
        layout: Layout,
        prefix: str,
        labels: dict[str, str],
        skip: Callable[[str, str], None],
    ) -> None:
        self.labels = labels
        self.labels_used: set[str] = set()
        self._gen = self._generate(store, layout, prefix, skip)

    def __next__(self) -> ManifestRow:
        return next(self._gen)

    def _generate(
        self, store: ObjectStore, layout: Layout, prefix: str, skip: Callable[[str, str], None]
    ) -> Iterator[ManifestRow]:
        open_cases: dict[str, _Case] = {}
        seen: set[str] = set()
        for info in store.list(prefix):
            for folder in [f for f in open_cases if not info.key.startswith(f + "/")]:
                row = self._finish(open_cases.pop(folder), layout, seen, skip)
                if row is not None:
                    yield row
            found = _classify(info.key, layout)
            if found is None:
                continue
            folder, role = found
            case = open_cases.setdefault(folder, _Case(folder))
            if role == "image":
                case.images.append(info.key)
            elif role == "mask":
                case.masks.append(info.key)
            else:
                case.series_files += 1
        for folder in sorted(open_cases):
            row = self._finish(open_cases.pop(folder), layout, seen, skip)
            if row is not None:
                yield row

    def _finish(
        self, case: _Case, layout: Layout, seen: set[str], skip: Callable[[str, str], None]
    ) -> ManifestRow | None:
        case_id = case.folder.rpartition("/")[2]
        if not case.images and not case.series_files:
            skip(case.folder, "no image")
            return None
        if not case.masks:
            skip(case.folder, "no mask")
            return None
        if case.images and case.series_files:
            skip(case.folder, "both an image file and an image/ DICOM series folder")
            return None
        if len(case.images) > 1 or len(case.masks) > 1:
            skip(case.folder, f"several candidate files ({', '.join(case.images + case.masks)})")
            return None
        if not CASE_ID_PATTERN.match(case_id):
            skip(case.folder, f"folder name {case_id!r} is not a valid case id")
            return None
        if case_id in seen:
            skip(case.folder, f"case id {case_id!r} already used by another folder")
            return None
        seen.add(case_id)
        image = case.images[0] if case.images else f"{case.folder}/{_CF_SERIES}/"
        label = self.labels.get(case_id)
        if label is not None:
            self.labels_used.add(case_id)
        return ManifestRow(case_id=case_id, image=image, mask=case.masks[0], label=label)


def _read_labels(store: ObjectStore, class_names: Sequence[str] | None) -> dict[str, str]:
    """``labels.csv`` (case_id,label) at the store root as a dict; {} when absent."""
    try:
        data = store.get(LABELS_KEY)
    except ObjectNotFoundError:
        return {}
    if class_names is None:
        from medcrypt.medical import CLASS_NAMES

        class_names = CLASS_NAMES
    uri = join_uri(store.uri, LABELS_KEY)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{LABELS_KEY}: expected UTF-8 text", uri=uri) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["case_id", "label"] or len(header) != 2:
        raise ManifestError([f"line 1: expected the header 'case_id,label', got {header}"], uri=uri)
    labels: dict[str, str] = {}
    problems: list[str] = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != 2:
            problems.append(f"line {line}: expected 2 values, got {len(values)}")
            continue
        case_id, label = (v.strip() for v in values)
        if label.isdigit() and int(label) < len(class_names):
            label = class_names[int(label)]  # a class index, as the phantom archive writes
        if case_id in labels:
            problems.append(f"line {line}: case_id {case_id!r} is listed twice")
        elif label and label not in class_names:
            problems.append(
                f"line {line}: label: expected one of {', '.join(class_names)} (or empty), "
                f"got {label!r}"
            )
        elif label:
            labels[case_id] = label
    if problems:
        raise ManifestError(problems, uri=uri)
    return labels
