"""Answers given in the web app, into the answer log through the answer sheets' validation.

Each *finished* web session (the reader handed it in) is written out as the exact bytes of its
filled answer sheet (the sheet ``study create`` printed, with the latest click per image in
the diagnosis column) and given to :func:`~medcrypt.study.ingest_sheets`, so web answers and
CSV answers pass one validator, land in one log, and the same answers give the same tally
either way. Re-ingesting is a no-op (same bytes, same SHA-256). Unfinished sessions wait.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from medcrypt.study._ingest import IngestResult, SheetInput, ingest_sheets
from medcrypt.study._key import UnblindingKey
from medcrypt.study._packet import sheet_csv, sheet_name
from medcrypt.study.web._store import DB_NAME, AnswerStore

__all__ = ["ingest_web_answers", "reopening_notes", "web_sheets"]


def web_sheets(key: UnblindingKey, store: AnswerStore) -> list[SheetInput]:
    """One filled sheet per finished web session, in the study's reader order."""
    finished = store.finished()
    early = store.early_openings()
    out: list[SheetInput] = []
    for a in key.assignments:
        if (a.reader, a.session) not in finished:
            continue
        clicks = store.answers(a.reader, a.session)
        latest = {c.image_id: c.diagnosis for c in clicks}
        text = sheet_csv(key.config, a, key.session_dates, latest)
        out.append(
            SheetInput(
                name=f"{DB_NAME}:{sheet_name(a.reader, a.session)}",
                data=text.encode("utf-8"),
                read_at=min((c.answered_at for c in clicks), default=None),
                allow_early=(a.reader, a.session) in early,
            )
        )
    return out


def ingest_web_answers(
    key: UnblindingKey, study_dir: Path, *, now: dt.datetime | None = None
) -> IngestResult:
    """Ingest every finished web session into ``STUDY/answers.jsonl`` (none if no database).

    Raises:
        AnswerSheetError: a web session fails the sheets' validation (for example its
            answers changed after it was ingested); nothing is stored then.
    """
    db = Path(study_dir) / DB_NAME
    if not db.exists():
        return IngestResult(stored={}, skipped=())
    sheets = web_sheets(key, AnswerStore(db))
    if not sheets:
        return IngestResult(stored={}, skipped=())
    return ingest_sheets(key, sheets, Path(study_dir) / "answers.jsonl", now=now)


def reopening_notes(study_dir: Path) -> list[str]:
    """One report note per web session the coordinator reopened after it was handed in."""
    db = Path(study_dir) / DB_NAME
    if not db.exists():
        return []
    return [
        f"web session {session} of reader {reader!r} was reopened by the coordinator after "
        f"it was handed in ({', '.join(w.strftime('%Y-%m-%d %H:%M UTC') for w in when)})"
        for (reader, session), when in sorted(AnswerStore(db).reopenings().items())
    ]
