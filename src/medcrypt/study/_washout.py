"""Washout: when each session may be read, and when its sheet actually came in.

At ingest, a sheet that comes in before its session's not-before date is refused unless the
coordinator passes ``allow_early`` (``medcrypt study ingest --allow-early``); the answers then
carry ``allowed_early=True`` in the log. The tally lists every early or late session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from medcrypt.config import StrictModel
from medcrypt.study._key import UnblindingKey
from medcrypt.study._log import AnswerRecord

__all__ = ["SessionTiming", "days_early", "session_timings"]


def days_early(key: UnblindingKey, session: int, today: dt.date) -> int:
    """How many days before its not-before date ``session`` is read ``today`` (0 if not early)."""
    not_before = key.session_dates.get(session)
    return max((not_before - today).days, 0) if not_before is not None else 0


class SessionTiming(StrictModel):
    """When one reader's sheet for one session was ingested (or, for answers given in the web
    app, answered), against its not-before date."""

    reader: str
    session: int
    not_before: dt.date | None
    ingested_on: dt.date
    #: days before ``not_before`` (> 0 only when early)
    days_early: int
    allowed_early: bool
    #: ``on time``, ``early`` or ``late``
    status: str
    detail: str


def _when(rec: AnswerRecord) -> dt.datetime:
    """When a session was read: the answer time where known (web app), else the ingest time."""
    return rec.answered_at or rec.ingested_at


def session_timings(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> list[SessionTiming]:
    """One row per ingested (reader, session): early, on time or late.

    Early: ingested before the session's not-before date, so it was read too soon (refused at
    ingest unless ``--allow-early``). Late: ingested more than ``washout_days`` after its
    not-before date; for session 1 that is after session 2 opened. The ingest date does not
    say when a sheet was read, so "late" asks the coordinator to check, nothing more.
    """
    washout = key.config.washout_days
    first: dict[tuple[str, int], AnswerRecord] = {}
    for rec in answers:
        slot = (rec.reader, rec.session)
        if slot not in first or _when(rec) < _when(first[slot]):
            first[slot] = rec
    rows: list[SessionTiming] = []
    for reader in key.config.readers:
        for session in (1, 2):
            got = first.get((reader, session))
            if got is None:
                continue
            rec = got
            not_before = key.session_dates.get(session)
            day = _when(rec).date()
            early = (not_before - day).days if not_before is not None else 0
            status, detail = "on time", ""
            verb = "answered in the web app" if rec.answered_at else "ingested"
            if early > 0:
                status = "early"
                detail = f"{verb} {early} day(s) before its not-before date " + (
                    (
                        "(opened early by the coordinator)"
                        if rec.answered_at
                        else "(accepted with --allow-early)"
                    )
                    if rec.allowed_early
                    else "(not recorded as allowed)"
                )
            elif not_before is not None and (day - not_before).days > washout:
                status = "late"
                late = (day - not_before).days
                detail = (
                    f"{verb} {late} day(s) after its not-before date, more than the "
                    f"{washout}-day washout"
                    + (" (after session 2 opened)" if session == 1 else "")
                    + ("" if rec.answered_at else "; the ingest date does not say when it was read")
                )
            rows.append(
                SessionTiming(
                    reader=reader,
                    session=session,
                    not_before=not_before,
                    ingested_on=day,
                    days_early=max(early, 0),
                    allowed_early=rec.allowed_early,
                    status=status,
                    detail=detail,
                )
            )
    return rows
