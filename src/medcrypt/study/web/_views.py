"""What the web app shows and accepts, without HTTP: the study, its readers and their state.

:class:`StudyService` answers the questions the routes ask: which session a reader may open
now (the washout decides, unless the coordinator opened it early), what that session holds,
whether an answer is valid, and each reader's progress for the coordinator. Routes turn its
:class:`Refusal` into an HTTP status.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcrypt import __version__
from medcrypt.study._blinding import BlindingCheck
from medcrypt.study._create import packet_dir
from medcrypt.study._key import SessionAssignment, UnblindingKey
from medcrypt.study._log import AnswerRecord
from medcrypt.study._packet import instructions_html
from medcrypt.study._washout import days_early, session_timings
from medcrypt.study.web._requests import (
    AnswerBody,
    FinishBody,
    ReaderBody,
    Refusal,
    ReopenBody,
    parse,
)
from medcrypt.study.web._store import AnswerStore

__all__ = ["APP_VERSION", "Refusal", "StudyService"]

#: recorded with every answer
APP_VERSION = f"medcrypt {__version__} study-web/1"


class StudyService:
    """The study as the web app sees it.

    Args:
        study_dir: the folder ``study create`` wrote.
        key: its unblinding key (never sent to a browser).
        store: the answer database.
        clock: the current time (UTC); tests pass a fixed one.
    """

    def __init__(
        self,
        study_dir: Path,
        key: UnblindingKey,
        store: AnswerStore,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.study_dir = Path(study_dir)
        self.key = key
        self.store = store
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.classes = tuple(key.config.classes)

    # -- readers ---------------------------------------------------------------------------

    def current(self, reader: str) -> SessionAssignment | None:
        """The reader's current session: 1 until handed in, then 2; None when both are."""
        finished = self.store.finished()
        for session in (1, 2):
            if (reader, session) not in finished:
                return self.key.assignment(reader, session)
        return None

    def _open(self, reader: str) -> SessionAssignment:
        """The current session, refused (403) while its washout runs and (409) when done."""
        a = self.current(reader)
        if a is None:
            raise Refusal(409, "You have handed in both sessions. Thank you.", status="done")
        early = days_early(self.key, a.session, self.clock().date())
        if early and (reader, a.session) not in self.store.early_openings():
            not_before = self.key.session_dates[a.session].isoformat()
            raise Refusal(
                403,
                f"Session {a.session} opens on {not_before} ({early} day(s) from today): the "
                "washout between the two sessions. Please come back then with the same link.",
                status="washout",
                not_before=not_before,
                session=a.session,
            )
        return a

    def reader_state(self, reader: str) -> dict[str, Any]:
        """Everything the reader's page needs for the current session.

        While the session is refused (washout) or both are handed in, only that status and
        its message: nothing of the session (the image, answer and hand-in requests of a
        refused session get 403 / 409).
        """
        try:
            a = self._open(reader)
        except Refusal as exc:
            return {"reader": reader, "message": exc.message, **exc.extra}
        clicks = self.store.answers(reader, a.session)
        latest = {c.image_id: c.diagnosis for c in clicks}
        order = list(a.image_ids)
        resume = 0
        if clicks:
            resume = order.index(clicks[-1].image_id) + 1
        if resume >= len(order) or order[resume] in latest:
            unanswered = [i for i, iid in enumerate(order) if iid not in latest]
            resume = unanswered[0] if unanswered else len(order)
        return {
            "study": self.key.config.name,
            "reader": reader,
            "session": a.session,
            "status": "open",
            "images": order,
            "answers": latest,
            "classes": list(self.classes),
            "allow_revisions": self.key.config.allow_revisions,
            "resume_at": resume,
            "not_before": self.key.session_dates[a.session].isoformat(),
            "instructions_html": instructions_html(
                self.key.config, a, self.key.session_dates, web=True
            ),
        }

    def image_path(self, reader: str, image_id: str) -> Path:
        """The PNG of one image of the reader's open session, resolved inside its packet."""
        a = self._open(reader)
        if image_id not in a.image_ids:
            raise Refusal(404, "no such image in your current session")
        folder = packet_dir(self.study_dir, reader, a.session).resolve()
        path = (folder / "images" / f"{image_id}.png").resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise Refusal(404, "no such image in your current session")
        return path

    def answer(self, reader: str, body: Any) -> dict[str, Any]:
        """Store one click; the reply says how many images of the session have an answer.

        When the study does not allow revisions, a second answer to an image (a new click,
        not a retry of the stored one) is refused with 409.
        """
        click = parse(AnswerBody, body)
        a = self._open(reader)
        if click.image_id not in a.image_ids:
            raise Refusal(422, f"image {click.image_id!r} is not in your session {a.session}")
        if click.diagnosis not in self.classes:
            raise Refusal(
                422, f"diagnosis {click.diagnosis!r} is not one of {' | '.join(self.classes)}"
            )
        if not self.key.config.allow_revisions:
            before = [
                c for c in self.store.answers(reader, a.session) if c.image_id == click.image_id
            ]
            if before and all(c.answer_id != click.answer_id for c in before):
                raise Refusal(
                    409,
                    "This study does not allow changing an answer: image "
                    f"{a.image_ids.index(click.image_id) + 1} has one already "
                    f"({before[-1].diagnosis}).",
                    status="no-revisions",
                )
        try:
            new = self.store.record_answer(
                answer_id=click.answer_id,
                reader=reader,
                session=a.session,
                image_id=click.image_id,
                diagnosis=click.diagnosis,
                answered_at=self.clock(),
                app_version=APP_VERSION,
            )
        except ValueError as exc:
            raise Refusal(409, str(exc)) from None
        answered = self.store.answered(reader, a.session)
        return {"saved": True, "new": new, "answered": answered, "total": len(a.image_ids)}

    def finish(self, reader: str, body: Any) -> dict[str, Any]:
        """Hand in session ``body["session"]`` once every image has an answer.

        Idempotent: handing in a session that is handed in already answers the same (a retried
        request must not hand in the next session).
        """
        session = parse(FinishBody, body).session
        if (reader, session) in self.store.finished():
            return {"finished": session}
        a = self._open(reader)
        if a.session != session:
            raise Refusal(409, f"session {session} is not your open session ({a.session} is)")
        latest = self.store.latest(reader, a.session)
        missing = [pos for pos, iid in enumerate(a.image_ids, start=1) if iid not in latest]
        if missing:
            raise Refusal(
                409,
                f"{len(missing)} image(s) have no answer yet: positions "
                + ", ".join(map(str, missing[:20]))
                + (" ..." if len(missing) > 20 else ""),
                missing=missing,
            )
        self.store.finish(reader, a.session, self.clock())
        return {"finished": a.session}

    # -- coordinator -----------------------------------------------------------------------

    def _reader(self, name: str) -> str:
        if name not in self.key.config.readers:
            raise Refusal(422, f"expected a reader of this study, got {name!r}")
        return name

    def open_early(self, body: Any) -> dict[str, Any]:
        """Open a reader's session 2 before its not-before date (recorded, like --allow-early)."""
        reader = self._reader(parse(ReaderBody, body).reader)
        early = days_early(self.key, 2, self.clock().date())
        if not early:
            raise Refusal(409, f"session 2 of {reader} is open already (no washout left)")
        self.store.open_early(reader, 2, self.clock(), early)
        return {"opened_early": reader, "days_early": early}

    def reopen(self, body: Any) -> dict[str, Any]:
        """Open a handed-in session again (recorded with its old hand-in time).

        Session 1 only while session 2 has no answer: a reader who has seen the other version
        of the cases must not change the first reading.
        """
        req = parse(ReopenBody, body)
        reader = self._reader(req.reader)
        if req.session == 1 and self.store.answers(reader, 2):
            raise Refusal(
                409, f"{reader} has answered in session 2 already; session 1 stays closed"
            )
        was = self.store.reopen(reader, req.session, self.clock())
        if was is None:
            raise Refusal(409, f"session {req.session} of {reader} is not handed in")
        return {"reopened": reader, "session": req.session, "was_finished_at": was.isoformat()}

    def progress(self) -> dict[str, Any]:
        """Progress per reader and session, early / late sessions, and the blinding check."""
        counts = self.store.counts()
        finished = self.store.finished()
        early = self.store.early_openings()
        reopened = self.store.reopenings()
        today = self.clock().date()
        first: dict[tuple[str, int], dt.datetime] = {}
        for c in self.store.answers():
            first.setdefault((c.reader, c.session), c.answered_at)
        records = [
            AnswerRecord(
                reader=r,
                session=s,
                image_id="",
                diagnosis="",
                sheet="web",
                sheet_line=0,
                sheet_sha256="",
                ingested_at=when,
                answered_at=when,
                allowed_early=(r, s) in early,
            )
            for (r, s), when in first.items()
        ]
        timing = {(t.reader, t.session): t for t in session_timings(self.key, records)}
        rows = []
        for a in self.key.assignments:
            slot = (a.reader, a.session)
            waiting = days_early(self.key, a.session, today) > 0 and slot not in early
            t = timing.get(slot)
            rows.append(
                {
                    "reader": a.reader,
                    "session": a.session,
                    "answered": counts.get(slot, 0),
                    "total": len(a.image_ids),
                    "finished_at": finished[slot].isoformat() if slot in finished else None,
                    "not_before": self.key.session_dates[a.session].isoformat(),
                    "waiting_for_washout": waiting,
                    "opened_early": slot in early,
                    "reopened_at": [w.isoformat() for w in reopened.get(slot, [])],
                    "timing": t.status if t else "not started",
                    "timing_detail": t.detail if t else "",
                }
            )
        return {
            "study": self.key.config.name,
            "today": today.isoformat(),
            "sessions": rows,
            "blinding": self._blinding(),
        }

    def _blinding(self) -> dict[str, Any]:
        path = self.study_dir / "blinding.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"available": False, "summary": "blinding.json is missing or unreadable"}
        check = BlindingCheck.model_validate(data)
        return {
            "available": True,
            "separable": check.separable,
            "worst_auc": round(check.worst(), 3),
            "summary": check.summary(),
        }
