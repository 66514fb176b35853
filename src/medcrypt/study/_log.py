"""The answer log ``answers.jsonl``: one JSON object per stored answer, append-only.

The README tells a coordinator to replace a sheet by removing its lines by hand, so the log
is read as *input*: every line is checked (JSON, fields, and, given the key, that its reader,
image ID, session and diagnosis belong to the study and that no image is answered twice by one
reader) and every problem is reported at once with its line number, never as a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError

from medcrypt.config import StrictModel
from medcrypt.errors import StudyError
from medcrypt.study._key import UnblindingKey

__all__ = ["AnswerRecord", "answer_log_problems", "read_answers"]

_MAX_LISTED = 20


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
    #: the session's not-before date at ingest time (None in logs written before it existed)
    not_before: dt.date | None = None
    #: True when the sheet came in before ``not_before`` and the coordinator allowed it
    #: (``medcrypt study ingest --allow-early``)
    allowed_early: bool = False
    #: when the answers were given, where that is known (answers from the web app); the
    #: washout and the report use it instead of ``ingested_at``
    answered_at: dt.datetime | None = None


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(
        (".".join(str(p) for p in e["loc"]) or "line") + f": {e['msg']}" for e in exc.errors()
    )


def answer_log_problems(
    key: UnblindingKey, answers: Sequence[AnswerRecord], lines: Sequence[int] | None = None
) -> list[str]:
    """Every way the records disagree with the key, each with its log line number."""
    where = list(lines) if lines is not None else list(range(1, len(answers) + 1))
    readers = set(key.config.readers)
    classes = set(key.config.classes)
    session_of = {(a.reader, iid): a.session for a in key.assignments for iid in a.image_ids}
    first: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for line, rec in zip(where, answers, strict=True):
        if rec.reader not in readers:
            problems.append(f"line {line}: reader {rec.reader!r} is not one of {sorted(readers)}")
            continue
        if rec.image_id not in key.images:
            problems.append(f"line {line}: image ID {rec.image_id!r} is not in this study")
            continue
        if rec.diagnosis not in classes:
            problems.append(
                f"line {line}: diagnosis {rec.diagnosis!r} is not one of the study's classes "
                f"({' | '.join(key.config.classes)}; spelled exactly)"
            )
        expected = session_of.get((rec.reader, rec.image_id))
        if expected != rec.session:
            problems.append(
                f"line {line}: image ID {rec.image_id!r} is in reader {rec.reader!r}'s "
                f"session {expected} packet, not session {rec.session}"
            )
        slot = (rec.reader, rec.image_id)
        if slot in first:
            problems.append(
                f"line {line}: reader {rec.reader!r} answered image {rec.image_id!r} already "
                f"on line {first[slot]} (remove one of the two lines)"
            )
        else:
            first[slot] = line
    return problems


def _raise(problems: list[str], path: Path | None) -> None:
    shown = problems[:_MAX_LISTED]
    more = len(problems) - len(shown)
    raise StudyError(
        f"the answer log has {len(problems)} problem(s); nothing was tallied:\n  "
        + "\n  ".join(shown)
        + (f"\n  ... and {more} more" if more else ""),
        uri=str(path) if path is not None else None,
    )


def read_answers(path: Path, key: UnblindingKey | None = None) -> list[AnswerRecord]:
    """Read the answer log (empty list if absent), checking every line.

    Raises:
        StudyError: listing every bad line by number (not JSON, a missing or malformed field,
            and with ``key``: an unknown reader, image or diagnosis, a wrong session, a
            repeated answer).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read the answer log: {exc}", uri=str(path)) from exc
    out: list[AnswerRecord] = []
    numbers: list[int] = []
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"line {n}: expected a JSON object, got {type(data).__name__}")
            continue
        try:
            out.append(AnswerRecord.model_validate(data))
        except ValidationError as exc:
            problems.append(f"line {n}: {_field_errors(exc)}")
            continue
        numbers.append(n)
    if key is not None and not problems:
        problems = answer_log_problems(key, out, numbers)
    if problems:
        _raise(problems, path)
    return out


def check_answers(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> None:
    """Raise :class:`StudyError` when records given in memory disagree with the key."""
    problems = answer_log_problems(key, answers)
    if problems:
        _raise([p.replace("line ", "record ", 1) for p in problems], None)
