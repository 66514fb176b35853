"""The archive manifest: one row per case (``case_id, image, mask, label[, split]``).

A manifest is a CSV file with a header row or a JSONL file (one JSON object per line), on the
local disk or in a store (``s3://...``). ``image`` and ``mask`` are keys relative to the
source root, or full URIs / paths inside it; an ``image`` ending in ``/`` names a folder
holding a DICOM series. ``label`` is a class name (or its index), or empty when unknown.

:func:`read_manifest` checks the whole file first and raises one :class:`ManifestError`
listing every invalid row with its line number; only then does it hand out rows, streaming
them from the file again so that memory does not grow with the archive (apart from the set of
case ids needed to find duplicates). What one row must be is in ``_manifest_row``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from medcrypt.cluster._manifest_row import (
    _REQUIRED,
    CASE_ID_PATTERN,
    MANIFEST_COLUMNS,
    ManifestRow,
    _parsed_source,
)
from medcrypt.errors import ConfigError, ManifestError, MedcryptError
from medcrypt.storage import is_s3_uri, local_path, open_store, split_uri

__all__ = [
    "CASE_ID_PATTERN",
    "MANIFEST_COLUMNS",
    "Manifest",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

#: At most this many problems are spelled out in one ManifestError.
MAX_PROBLEMS = 200

ManifestFormat = Literal["csv", "jsonl"]


def _format_of(name: str) -> ManifestFormat:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ConfigError(
        f"manifest: expected a .csv or .jsonl file, got {name!r}", field="manifest", uri=name
    )


def _raw_records(path: Path, fmt: ManifestFormat) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, record) pairs; a str record is a problem found while parsing that line."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if fmt == "jsonl":
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"not valid JSON ({exc.msg} at column {exc.colno})"
                    continue
                if not isinstance(data, dict):
                    yield number, f"expected a JSON object, got {type(data).__name__}"
                    continue
                yield number, data
            return
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            yield 1, "expected a header row (case_id,image,mask,label[,split]), got an empty file"
            return
        columns = [h.strip() for h in header]
        missing = [c for c in _REQUIRED if c not in columns]
        unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if missing or unknown or dupes:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
            if dupes:
                parts.append(f"repeated column(s) {', '.join(dupes)}")
            yield (
                1,
                "header: expected columns case_id,image,mask,label[,split]; " + "; ".join(parts),
            )
            return
        for values in reader:
            number = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(columns):
                yield number, f"expected {len(columns)} values, got {len(values)}"
                continue
            yield number, {c: v for c, v in zip(columns, values, strict=False)}


def _row_problems(number: int, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "row"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing (required)"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown field (expected {', '.join(MANIFEST_COLUMNS)})"
        out.append(f"line {number}: {field}: {msg}")
    return out


class Manifest(Iterable[ManifestRow]):
    """A checked manifest: iterate to stream its rows (each iteration re-reads the file).

    Attributes:
        uri: where it was read from.
        source: the source root its keys are relative to (``None`` if none was given).
        format: ``"csv"`` or ``"jsonl"``.
        class_names: the class names labels were checked against.
    """

    def __init__(
        self,
        *,
        uri: str,
        path: Path,
        fmt: ManifestFormat,
        source: str | None,
        class_names: tuple[str, ...] | None,
        count: int,
        cleanup: bool = False,
    ) -> None:
        self.uri = uri
        self.path = path
        self.format: ManifestFormat = fmt
        self.source = source
        self.class_names = class_names
        self._count = count
        if cleanup:
            weakref.finalize(self, _unlink, str(path))

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Manifest({self.uri!r}, {self._count} rows)"

    def __iter__(self) -> Iterator[ManifestRow]:
        context = {"source": _parsed_source(self.source), "class_names": self.class_names}
        for number, raw in _raw_records(self.path, self.format):
            try:
                yield _validate_row(number, raw, context)
            except (ValidationError, ValueError) as exc:  # the file changed after the check
                problems = (
                    _row_problems(number, exc)
                    if isinstance(exc, ValidationError)
                    else [f"line {number}: {exc}"]
                )
                raise ManifestError(problems, uri=self.uri) from exc


def _validate_row(number: int, raw: dict[str, Any] | str, context: dict[str, Any]) -> ManifestRow:
    if isinstance(raw, str):
        raise ValueError(raw)
    unknown = sorted(k for k in raw if k not in MANIFEST_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(repr(k) for k in unknown)} "
            f"(expected {', '.join(MANIFEST_COLUMNS)})"
        )
    data = {k: v for k, v in raw.items() if v is not None}
    for name in _REQUIRED:
        if isinstance(data.get(name), str) and not data[name].strip():
            del data[name]  # an empty required value reads as "missing"
    row = ManifestRow.model_validate({**data, "line": number}, context=context)
    names = context.get("class_names")
    if row.label is not None and names is not None:
        row = row.model_copy(update={"label_index": list(names).index(row.label)})
    return row


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def read_manifest(
    manifest: str | Path,
    *,
    source: str | None = None,
    class_names: Sequence[str] | None = None,
    endpoint_url: str | None = None,
) -> Manifest:
    """Check a manifest completely, then return it as a re-iterable stream of rows.

    Args:
        manifest: local path or store URI (``s3://bucket/manifest.csv``) of a ``.csv`` (with
            header) or ``.jsonl`` file.
        source: the source root. When given, ``image`` / ``mask`` given as full URIs or paths
            inside it become relative keys, and anything outside it is an error.
        class_names: the classes labels must name (a label may also be a class index); default
            :data:`medcrypt.medical.CLASS_NAMES`.
        endpoint_url: S3 endpoint for a manifest held in S3.

    Raises:
        ConfigError: the manifest cannot be read or has an unknown extension.
        ManifestError: one or more rows are invalid; ``problems`` lists each with its line
            (missing or empty fields, bad case ids, duplicate case ids, unknown labels,
            images or masks outside the source, malformed CSV/JSON).
    """
    if class_names is None:
        from medcrypt.medical import CLASS_NAMES

        class_names = CLASS_NAMES
    names = tuple(class_names)
    uri = str(manifest)
    fmt = _format_of(uri)
    context = {"source": _parsed_source(source), "class_names": names}
    path, cleanup = _local_copy(uri, endpoint_url)
    problems: list[str] = []
    hidden = 0
    seen: dict[str, int] = {}
    count = 0
    try:
        for number, raw in _raw_records(path, fmt):
            try:
                row = _validate_row(number, raw, context)
            except ValidationError as exc:
                found = _row_problems(number, exc)
            except ValueError as exc:
                found = [f"line {number}: {exc}"]
            else:
                found = []
                first = seen.setdefault(row.case_id, number)
                if first != number:
                    found = [f"line {number}: case_id: {row.case_id!r} repeats line {first}"]
                count += 1
            room = MAX_PROBLEMS - len(problems)
            problems.extend(found[: max(room, 0)])
            hidden += max(len(found) - max(room, 0), 0)
    except OSError as exc:
        raise ConfigError(f"manifest: cannot read {uri}: {exc}", field="manifest", uri=uri) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"manifest: expected UTF-8 text, got undecodable bytes at offset {exc.start}",
            field="manifest",
            uri=uri,
        ) from exc
    if problems:
        if cleanup:
            _unlink(str(path))
        if hidden:
            problems.append(f"... and {hidden} more problem(s) not shown")
        raise ManifestError(problems, uri=uri)
    logger.debug("manifest %s: %d rows checked", uri, count)
    return Manifest(
        uri=uri, path=path, fmt=fmt, source=source, class_names=names, count=count, cleanup=cleanup
    )


def _local_copy(uri: str, endpoint_url: str | None) -> tuple[Path, bool]:
    """A local file holding the manifest; (path, whether it is a temporary copy)."""
    if not is_s3_uri(uri):
        path = local_path(uri, field="manifest")
        if not path.is_file():
            raise ConfigError(
                f"manifest: expected a file, found {'a folder' if path.exists() else 'nothing'}",
                field="manifest",
                uri=uri,
            )
        return path, False
    root, key = split_uri(uri)
    fd, tmp = tempfile.mkstemp(prefix="medcrypt-manifest-", suffix=Path(key).suffix)
    os.close(fd)
    try:
        open_store(root, endpoint_url=endpoint_url).get_to_file(key, Path(tmp))
    except MedcryptError as exc:
        _unlink(tmp)
        raise ConfigError(f"manifest: cannot read it: {exc}", field="manifest", uri=uri) from exc
    return Path(tmp), True


def write_manifest(
    rows: Iterable[ManifestRow | Mapping[str, Any]],
    out: str | Path,
    *,
    endpoint_url: str | None = None,
) -> int:
    """Write ``rows`` as a CSV manifest (columns :data:`MANIFEST_COLUMNS`); return the count.

    ``out`` is a local path (written atomically) or a store URI. Rows stream through a
    temporary file, so memory does not grow with their number.
    """
    uri = str(out)
    if not uri.lower().endswith(".csv"):
        raise ConfigError(f"out: expected a .csv path, got {uri!r}", field="out", uri=uri)
    target = None if is_s3_uri(uri) else local_path(uri, field="out")
    tmp_dir = target.parent if target is not None else None
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".medcrypt-tmp-manifest-", suffix=".csv", dir=tmp_dir)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(MANIFEST_COLUMNS)
            for row in rows:
                data = row.model_dump() if isinstance(row, ManifestRow) else dict(row)
                writer.writerow(["" if data.get(c) is None else data[c] for c in MANIFEST_COLUMNS])
                count += 1
        if target is not None:
            os.replace(tmp, target)
        else:
            root, key = split_uri(uri)
            with open(tmp, "rb") as fh:
                open_store(root, endpoint_url=endpoint_url).put(key, fh.read())
    finally:
        _unlink(tmp)
    logger.debug("wrote manifest %s with %d rows", uri, count)
    return count


def manifest_text(rows: Iterable[ManifestRow | Mapping[str, Any]]) -> str:
    """The CSV text :func:`write_manifest` would write (for small manifests and tests)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        data = row.model_dump() if isinstance(row, ManifestRow) else dict(row)
        writer.writerow(["" if data.get(c) is None else data[c] for c in MANIFEST_COLUMNS])
    return buf.getvalue()
