"""Ingest filled answer sheets: validate everything first, then append to a JSONL log.

Rules (every violation is reported, with its sheet and line, in one
:class:`~medcrypt.errors.AnswerSheetError`; nothing is stored unless every sheet is clean):

- the sheet carries a known sheet code (``# sheet code: ...`` line) and the expected header;
- each row's ``reader`` / ``session`` match the reader and session the sheet was issued to
  (a sheet for the wrong reader or session);
- each ``image_id`` is known to the key (unknown ID) and belongs to this reader's packet for
  this session (an ID from another session's packet: wrong session);
- no image ID appears twice (duplicate); every image of the packet has a row and every row a
  diagnosis (missing answer);
- the diagnosis is one of the study's classes (compared ignoring case and surrounding blanks;
  stored with the class list's spelling).

Sheets saved by a spreadsheet with ``;`` as the separator are read too. Session-2 sheets
ingested before the session's not-before date are accepted with a logged warning.

Re-ingesting: answers are stored append-only in ``answers.jsonl`` with the ingest time and the
sheet's SHA-256. A sheet whose exact bytes were already ingested is a **no-op** (reported as
skipped). A *different* sheet for a (reader, session) that already has answers is refused as
a problem: medcrypt never rewrites the log, so replacing stored answers is a deliberate act
of the coordinator (remove that sheet's lines from the log by hand). Two sheets for the
same (reader, session) in one call are refused too.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import Field, ValidationError

from medcrypt.config import StrictModel
from medcrypt.errors import AnswerSheetError, StudyError
from medcrypt.study._create import SHEET_COLUMNS
from medcrypt.study._key import SessionAssignment, UnblindingKey

__all__ = ["AnswerRecord", "IngestResult", "ingest_sheets", "read_answers"]

logger = logging.getLogger(__name__)

_CODE_PREFIX = "sheet code:"


class AnswerRecord(StrictModel):
    """One stored answer (one line of ``answers.jsonl``)."""

    reader: str
    session: int = Field(ge=1, le=2)
    image_id: str
    diagnosis: str
    sheet: str
    sheet_line: int
    sheet_sha256: str
    ingested_at: dt.datetime


class IngestResult(StrictModel):
    """What one call stored: per sheet file, the number of answers; and the skipped sheets."""

    stored: dict[str, int]
    skipped: tuple[str, ...]


def read_answers(path: Path) -> list[AnswerRecord]:
    """Read the answer log (empty list if absent)."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[AnswerRecord] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(AnswerRecord.model_validate_json(line))
        except ValidationError as exc:
            raise StudyError(f"answer log line {n} is invalid: {exc}", uri=str(path)) from exc
    return out


def _delimiter(lines: Sequence[str]) -> str:
    """',' unless the header row was saved with ';' (spreadsheets in many locales do that)."""
    for line in lines:
        if line.strip() and not line.lstrip().lstrip('"').startswith("#"):
            cells = tuple(c.strip().strip('"') for c in line.split(";"))
            return ";" if cells == SHEET_COLUMNS else ","
    return ","


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(physical line number, cells) of every non-blank CSV row."""
    lines = text.splitlines()
    for number, cells in enumerate(csv.reader(lines, delimiter=_delimiter(lines)), start=1):
        if cells and any(c.strip() for c in cells):
            yield number, cells


class _Sheet:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.data = path.read_bytes()
        self.sha256 = hashlib.sha256(self.data).hexdigest()


def _check_sheet(
    sheet: _Sheet, key: UnblindingKey, problems: list[str]
) -> tuple[SessionAssignment | None, list[tuple[int, str, str]]]:
    """Validate one sheet; return its assignment and (line, image_id, diagnosis) rows."""
    where = sheet.name

    def bad(line: int | None, message: str) -> None:
        problems.append(f"{where}" + (f" line {line}" if line else "") + f": {message}")

    try:
        text = sheet.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        bad(None, "is not UTF-8 text; save the sheet as CSV (UTF-8)")
        return None, []

    codes = key.by_sheet_code()
    classes = {c.casefold(): c for c in key.config.classes}
    assignment: SessionAssignment | None = None
    code_seen = False
    header_seen = False
    rows: list[tuple[int, str, str]] = []
    pending: list[tuple[int, list[str]]] = []
    for line, cells in _rows(text):
        first = cells[0].strip()
        if first.startswith("#"):
            body = first.lstrip("#").strip()
            if body.lower().startswith(_CODE_PREFIX):
                code = body[len(_CODE_PREFIX) :].strip()
                code_seen = True
                assignment = codes.get(code)
                if assignment is None:
                    bad(line, f"sheet code {code!r} was not issued by this study")
            continue
        if not header_seen:
            header = tuple(c.strip() for c in cells)
            if header != SHEET_COLUMNS:
                bad(line, f"expected the header {','.join(SHEET_COLUMNS)}, got {','.join(header)}")
                return None, []
            header_seen = True
            continue
        pending.append((line, cells))
    if not header_seen:
        bad(None, f"no header row {','.join(SHEET_COLUMNS)} found")
        return None, []
    if assignment is None:
        if not code_seen:
            bad(None, "has no '# sheet code: ...' line, so it cannot be matched to a packet")
        return None, []

    expected = set(assignment.image_ids)
    issued = f"reader {assignment.reader!r} session {assignment.session}"
    first_line: dict[str, int] = {}
    for line, cells in pending:
        if len(cells) != len(SHEET_COLUMNS):
            bad(line, f"expected {len(SHEET_COLUMNS)} cells, got {len(cells)}")
            continue
        reader, session, _position, iid, diagnosis = (c.strip() for c in cells)
        if reader != assignment.reader or session != str(assignment.session):
            bad(
                line,
                f"row is for reader {reader!r} session {session!r} but this sheet was issued "
                f"to {issued} (sheet for the wrong reader or session)",
            )
            continue
        if iid not in key.images:
            bad(line, f"unknown image ID {iid!r} (not in this study)")
            continue
        if iid not in expected:
            other = [
                f"reader {a.reader!r} session {a.session}"
                for a in key.assignments
                if iid in a.image_ids and a.reader == assignment.reader
            ]
            bad(
                line,
                f"image ID {iid!r} is not in the packet of {issued}"
                + (f"; it belongs to {other[0]} (wrong session)" if other else ""),
            )
            continue
        if iid in first_line:
            bad(line, f"duplicate image ID {iid!r} (first given on line {first_line[iid]})")
            continue
        first_line[iid] = line
        if not diagnosis:
            bad(line, f"missing answer for image ID {iid!r}")
            continue
        if diagnosis.casefold() not in classes:
            bad(
                line,
                f"diagnosis {diagnosis!r} for image ID {iid!r} is not in the closed list "
                f"{' | '.join(key.config.classes)}",
            )
            continue
        rows.append((line, iid, classes[diagnosis.casefold()]))
    for iid in assignment.image_ids:
        if iid not in first_line:
            bad(None, f"missing answer: no row for image ID {iid!r} of {issued}")
    return assignment, rows


def ingest_sheets(
    key: UnblindingKey,
    sheets: Sequence[Path],
    answers_path: Path,
    *,
    now: dt.datetime | None = None,
) -> IngestResult:
    """Validate every sheet against the key, then append all answers (or none).

    Raises:
        AnswerSheetError: one or more problems; ``problems`` lists them all with sheet and line.
        StudyError: a sheet file cannot be read.
    """
    answers_path = Path(answers_path)
    existing = read_answers(answers_path)
    done_hashes = {r.sheet_sha256 for r in existing}
    done_sessions: dict[tuple[str, int], str] = {}
    for r in existing:
        done_sessions.setdefault((r.reader, r.session), r.sheet)

    loaded: list[_Sheet] = []
    for path in sheets:
        try:
            loaded.append(_Sheet(Path(path)))
        except OSError as exc:
            raise StudyError(f"cannot read answer sheet: {exc}", uri=str(path)) from exc

    problems: list[str] = []
    skipped: list[str] = []
    accepted: list[tuple[_Sheet, SessionAssignment, list[tuple[int, str, str]]]] = []
    batch_sessions: dict[tuple[str, int], str] = {}
    batch_hashes: set[str] = set()
    for sheet in loaded:
        if sheet.sha256 in done_hashes or sheet.sha256 in batch_hashes:
            logger.info(
                "sheet %s was already ingested (sha256 %s); skipping", sheet.path, sheet.sha256
            )
            skipped.append(str(sheet.path))
            continue
        batch_hashes.add(sheet.sha256)
        assignment, rows = _check_sheet(sheet, key, problems)
        if assignment is None:
            continue
        slot = (assignment.reader, assignment.session)
        if slot in done_sessions:
            problems.append(
                f"{sheet.name}: answers for reader {slot[0]!r} session {slot[1]} were already "
                f"ingested from {done_sessions[slot]!r}; a different sheet for them is refused"
            )
            continue
        if slot in batch_sessions:
            problems.append(
                f"{sheet.name}: {batch_sessions[slot]!r} in this batch is also for reader "
                f"{slot[0]!r} session {slot[1]}; give one sheet per reader and session"
            )
            continue
        batch_sessions[slot] = sheet.name
        accepted.append((sheet, assignment, rows))
        not_before = key.session_dates.get(assignment.session)
        if not_before is not None and (now or dt.datetime.now(dt.UTC)).date() < not_before:
            logger.warning(
                "sheet %s is for session %d, which should not be read before %s",
                sheet.name,
                assignment.session,
                not_before.isoformat(),
            )
    if problems:
        raise AnswerSheetError(problems)

    stamp = now or dt.datetime.now(dt.UTC)
    lines: list[str] = []
    stored: dict[str, int] = {}
    for sheet, assignment, rows in accepted:
        for line, iid, diagnosis in rows:
            record = AnswerRecord(
                reader=assignment.reader,
                session=assignment.session,
                image_id=iid,
                diagnosis=diagnosis,
                sheet=sheet.name,
                sheet_line=line,
                sheet_sha256=sheet.sha256,
                ingested_at=stamp,
            )
            lines.append(record.model_dump_json())
        stored[str(sheet.path)] = len(rows)
    if lines:
        answers_path.parent.mkdir(parents=True, exist_ok=True)
        with answers_path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    logger.info("ingested %d answers from %d sheet(s)", len(lines), len(stored))
    return IngestResult(stored=stored, skipped=tuple(skipped))
