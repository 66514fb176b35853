"""Ingest filled answer sheets: validate everything first, then append to a JSONL log.

Rules (every violation is reported, with its sheet and line, in one
:class:`~medcrypt.errors.AnswerSheetError`; nothing is stored unless every sheet is clean):

- the sheet carries a known sheet code (``# sheet code: ...`` line) and the expected header;
- each row's ``reader`` / ``session`` match the reader and session the sheet was issued to
  (a sheet for the wrong reader or session; a session written ``1.0`` by a spreadsheet is
  named as such); reader names are compared ignoring case;
- each ``image_id`` is known to the key (unknown ID; IDs are compared ignoring case, since
  they are lowercase base32, and a malformed one is named as such) and belongs to this
  reader's packet for this session (an ID from another session's packet: wrong session);
- no image ID appears twice (duplicate); every image of the packet has a row and every row a
  diagnosis (missing answer);
- the diagnosis is one of the study's classes (compared ignoring case and surrounding blanks;
  stored with the class list's spelling);
- the sheet does not come in before its session's not-before date (the washout), unless the
  coordinator allows it (``allow_early``; recorded with every answer and shown in the report).

The sheet code, not the file name, says whose sheet it is: a sheet stored for ``dr_c`` from a
file named ``answers_dr_b_session-1.csv`` is reported under ``dr_c``, with the file named.
Sheets saved by a spreadsheet with ``;`` as the separator are read too.

Answers given in the web app (``medcrypt study serve``) come in the same way: each finished
web session is written out as the exact bytes of its filled answer sheet (:class:`SheetInput`,
see :mod:`medcrypt.study.web`) and goes through this same validation. Such a sheet carries the
time its answers were given (``read_at``, checked against the washout instead of the ingest
time) and whether the coordinator opened it early (``allow_early`` for that sheet alone).

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
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from medcrypt.config import StrictModel
from medcrypt.errors import AnswerSheetError, StudyError
from medcrypt.study._key import SessionAssignment, UnblindingKey
from medcrypt.study._log import AnswerRecord, read_answers
from medcrypt.study._packet import SHEET_COLUMNS
from medcrypt.study._washout import days_early

__all__ = ["IngestResult", "SheetInput", "StoredSheet", "ingest_sheets"]

logger = logging.getLogger(__name__)

_CODE_PREFIX = "sheet code:"


class StoredSheet(StrictModel):
    """One sheet file that was stored, under the reader and session its sheet code names."""

    file: str
    reader: str
    session: int
    n_answers: int
    early_days: int = 0
    #: set when the file name names another reader or session than the sheet code
    name_mismatch: str | None = None


class IngestResult(StrictModel):
    """What one call stored: per sheet file, the number of answers; and the skipped sheets."""

    stored: dict[str, int]
    skipped: tuple[str, ...]
    sheets: tuple[StoredSheet, ...] = ()


_NAME_RE = re.compile(r"answers_(?P<reader>.+)_session-(?P<session>\d+)\.csv$", re.IGNORECASE)


def _name_mismatch(name: str, assignment: SessionAssignment) -> str | None:
    """Why a sheet's file name disagrees with its sheet code, or None."""
    m = _NAME_RE.search(name)
    if m is None:
        return None
    if m["reader"] == assignment.reader and int(m["session"]) == assignment.session:
        return None
    return (
        f"the file name says reader {m['reader']!r} session {m['session']}, but the sheet code "
        f"and rows are reader {assignment.reader!r} session {assignment.session}; stored under "
        f"reader {assignment.reader!r} (the sheet code decides)"
    )


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


@dataclass(frozen=True)
class SheetInput:
    """A filled answer sheet given as bytes rather than a file (the web app's finished sessions).

    ``name`` is what the log and every message call it; ``read_at`` is when its answers were
    given (the washout is checked against it instead of the ingest time); ``allow_early``
    accepts this sheet alone before its not-before date (the coordinator opened it early).
    """

    name: str
    data: bytes
    read_at: dt.datetime | None = None
    allow_early: bool = False


class _Sheet:
    def __init__(self, source: Path | SheetInput) -> None:
        if isinstance(source, SheetInput):
            self.path = Path(source.name)
            self.label = source.name
            self.name = source.name
            self.data = source.data
            self.read_at = source.read_at
            self.allow_early = source.allow_early
        else:
            self.path = Path(source)
            self.label = str(source)
            self.name = self.path.name
            self.data = self.path.read_bytes()
            self.read_at = None
            self.allow_early = False
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
    if _name_mismatch(sheet.name, assignment):
        where = f"{sheet.name} (the sheet of {issued}, by its sheet code)"
    first_line: dict[str, int] = {}
    for line, cells in pending:
        if len(cells) != len(SHEET_COLUMNS):
            bad(line, f"expected {len(SHEET_COLUMNS)} cells, got {len(cells)}")
            continue
        reader, session, _position, raw_iid, diagnosis = (c.strip() for c in cells)
        problem = _row_identity(reader, session, assignment)
        if problem:
            bad(line, problem)
            continue
        iid = raw_iid.lower()
        if iid not in key.images:
            bad(line, _unknown_id(raw_iid))
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


def _row_identity(reader: str, session: str, assignment: SessionAssignment) -> str | None:
    """Why a row's reader / session cells do not match the sheet, or None when they do."""
    issued = f"reader {assignment.reader!r} session {assignment.session}"
    problems: list[str] = []
    if reader.casefold() != assignment.reader.casefold():
        problems.append(
            f"the row names reader {reader!r} but this sheet was issued to {issued} "
            "(a sheet for the wrong reader?)"
        )
    if session != str(assignment.session):
        try:
            number = float(session)
        except ValueError:
            number = None
        if number is not None and number.is_integer() and int(number) == assignment.session:
            problems.append(
                f"session {session!r} is not written as a whole number: write "
                f"{assignment.session} (a spreadsheet may have reformatted the column)"
            )
        elif number is not None and number.is_integer() and int(number) in (1, 2):
            problems.append(
                f"the row says session {session} but this sheet was issued for {issued} "
                "(a sheet for the wrong session?)"
            )
        else:
            problems.append(f"session {session!r} is not a session number (1 or 2)")
    return "; ".join(problems) or None


_ID_RE = re.compile(r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$")


def _unknown_id(raw: str) -> str:
    if not _ID_RE.match(raw.lower()):
        return (
            f"image ID {raw!r} is not written like an image ID (xxxx-xxxx-xxxx, letters a-z "
            "and digits 2-7): was the cell changed?"
        )
    return f"unknown image ID {raw!r}: well formed, but not an image of this study"


def ingest_sheets(
    key: UnblindingKey,
    sheets: Sequence[Path | SheetInput],
    answers_path: Path,
    *,
    now: dt.datetime | None = None,
    allow_early: bool = False,
) -> IngestResult:
    """Validate every sheet against the key, then append all answers (or none).

    A sheet that comes in before its session's not-before date (the washout) is a problem
    unless ``allow_early``; then it is stored with ``allowed_early=True`` and a warning.

    Raises:
        AnswerSheetError: one or more problems; ``problems`` lists them all with sheet and line.
        StudyError: a sheet file cannot be read, or the answer log is broken.
    """
    answers_path = Path(answers_path)
    existing = read_answers(answers_path)
    done_hashes = {r.sheet_sha256 for r in existing}
    done_sessions: dict[tuple[str, int], str] = {}
    for r in existing:
        done_sessions.setdefault((r.reader, r.session), r.sheet)

    loaded: list[_Sheet] = []
    for source in sheets:
        try:
            loaded.append(_Sheet(source))
        except OSError as exc:
            raise StudyError(f"cannot read answer sheet: {exc}", uri=str(source)) from exc

    stamp = now or dt.datetime.now(dt.UTC)
    problems: list[str] = []
    skipped: list[str] = []
    accepted: list[tuple[_Sheet, SessionAssignment, list[tuple[int, str, str]], int]] = []
    batch_sessions: dict[tuple[str, int], str] = {}
    batch_hashes: set[str] = set()
    for sheet in loaded:
        if sheet.sha256 in done_hashes or sheet.sha256 in batch_hashes:
            logger.info(
                "sheet %s was already ingested (sha256 %s); skipping", sheet.label, sheet.sha256
            )
            skipped.append(sheet.label)
            continue
        batch_hashes.add(sheet.sha256)
        assignment, rows = _check_sheet(sheet, key, problems)
        if assignment is None:
            continue
        slot = (assignment.reader, assignment.session)
        label = sheet.name
        if _name_mismatch(sheet.name, assignment):
            label += f" (the sheet of reader {slot[0]!r} session {slot[1]}, by its sheet code)"
        if slot in done_sessions:
            problems.append(
                f"{label}: answers for reader {slot[0]!r} session {slot[1]} were already "
                f"ingested from {done_sessions[slot]!r}; a different sheet for them is refused"
            )
            continue
        if slot in batch_sessions:
            problems.append(
                f"{label}: {batch_sessions[slot]!r} in this batch is also for reader "
                f"{slot[0]!r} session {slot[1]}; give one sheet per reader and session"
            )
            continue
        batch_sessions[slot] = sheet.name
        read_on = (sheet.read_at or stamp).date()
        early = days_early(key, assignment.session, read_on)
        if early and not (allow_early or sheet.allow_early):
            problems.append(
                f"{label}: session {slot[1]} may not be read before "
                f"{key.session_dates[slot[1]].isoformat()} ({early} day(s) "
                + ("before it was read" if sheet.read_at else "from now")
                + ", the washout); refused. If the coordinator accepts the early reading, ingest "
                "again with --allow-early (it is recorded in the log and the report)"
            )
            continue
        if early:
            logger.warning(
                "sheet %s is for session %d, which should not be read before %s (%d day(s) "
                "early); stored because it was allowed early (--allow-early, or opened early "
                "by the coordinator in the web app), and recorded",
                sheet.name,
                assignment.session,
                key.session_dates[slot[1]].isoformat(),
                early,
            )
        accepted.append((sheet, assignment, rows, early))
    if problems:
        raise AnswerSheetError(problems)

    lines: list[str] = []
    stored: dict[str, int] = {}
    stored_sheets: list[StoredSheet] = []
    for sheet, assignment, rows, early in accepted:
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
                not_before=key.session_dates.get(assignment.session),
                allowed_early=early > 0,
                answered_at=sheet.read_at,
            )
            lines.append(record.model_dump_json())
        stored[sheet.label] = len(rows)
        mismatch = _name_mismatch(sheet.name, assignment)
        if mismatch:
            logger.warning("sheet %s: %s", sheet.label, mismatch)
        stored_sheets.append(
            StoredSheet(
                file=sheet.label,
                reader=assignment.reader,
                session=assignment.session,
                n_answers=len(rows),
                early_days=early,
                name_mismatch=mismatch,
            )
        )
    if lines:
        answers_path.parent.mkdir(parents=True, exist_ok=True)
        with answers_path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    logger.info("ingested %d answers from %d sheet(s)", len(lines), len(stored))
    return IngestResult(stored=stored, skipped=tuple(skipped), sheets=tuple(stored_sheets))
