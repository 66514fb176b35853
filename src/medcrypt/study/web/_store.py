"""The web app's answer database: ``STUDY/answers.sqlite`` (SQLite, WAL, one row per click).

Tables::

    answers(row, answer_id UNIQUE, reader, session, image_id, diagnosis, answered_at,
            app_version)                     every click, as the browser sent it
    finished(reader, session, finished_at)   sessions a reader handed in (no change after)
    early_openings(reader, session, opened_at, days_early)
                                             session 2 opened by the coordinator before its
                                             not-before date (recorded like --allow-early)
    reopenings(reader, session, reopened_at, finished_at)
                                             a handed-in session the coordinator opened
                                             again (recorded, like an early opening)
    tokens(token_sha256, role, reader, issued_at)
                                             SHA-256 of each access token, never the token

Every click is kept as its own row, keyed by an ID the browser draws for that click
(``answer_id``): the *latest* row per (reader, session, image) is the answer. Keeping clicks
rather than overwriting one row per image means a retried request (the browser did not see
the reply, the server was killed) is recognised and stored once (``INSERT OR IGNORE`` on the
unique ID), "0 lost, 0 duplicated" can be counted exactly, and a changed mind stays visible.

The file is created owner-only (0600). Durability: ``journal_mode=WAL`` with
``synchronous=FULL``, so a committed click survives a killed server and a power cut; each
call opens its own connection (no connection is shared between threads) and commits before
the reply is sent. Locked, read-only and full databases
become :class:`~medcrypt.errors.AnswerStoreError` with a message for the reader.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from medcrypt.errors import AnswerStoreError

__all__ = ["DB_NAME", "AnswerStore", "StoredAnswer"]

#: the database's file name inside the study folder
DB_NAME = "answers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id TEXT NOT NULL UNIQUE,
    reader TEXT NOT NULL,
    session INTEGER NOT NULL CHECK (session IN (1, 2)),
    image_id TEXT NOT NULL,
    diagnosis TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    app_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_slot ON answers (reader, session, image_id, row);
CREATE TABLE IF NOT EXISTS finished (
    reader TEXT NOT NULL,
    session INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (reader, session)
);
CREATE TABLE IF NOT EXISTS early_openings (
    reader TEXT NOT NULL,
    session INTEGER NOT NULL,
    opened_at TEXT NOT NULL,
    days_early INTEGER NOT NULL,
    PRIMARY KEY (reader, session)
);
CREATE TABLE IF NOT EXISTS reopenings (
    reader TEXT NOT NULL,
    session INTEGER NOT NULL,
    reopened_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reader', 'coordinator')),
    reader TEXT,
    issued_at TEXT NOT NULL
);
"""


class StoredAnswer:
    """One stored click."""

    __slots__ = ("answer_id", "answered_at", "diagnosis", "image_id", "reader", "row", "session")

    def __init__(self, row: Sequence[object]) -> None:
        self.row = int(row[0])  # type: ignore[call-overload]
        self.answer_id = str(row[1])
        self.reader = str(row[2])
        self.session = int(row[3])  # type: ignore[call-overload]
        self.image_id = str(row[4])
        self.diagnosis = str(row[5])
        self.answered_at = dt.datetime.fromisoformat(str(row[6]))


def _reason(exc: sqlite3.Error) -> tuple[str, str]:
    """(reason, message for the reader) of an SQLite failure."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "locked", "the answer database is busy (locked by another program)"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "read-only", "the answer database is read-only, so answers cannot be saved"
    if "full" in text:
        return "full", "the disk holding the answer database is full"
    if "disk i/o" in text or "unable to open" in text:
        return "io", (
            f"the disk refused to write the answer database (read-only, full or failing: {exc})"
        )
    return "other", f"the answer database failed ({exc})"


class AnswerStore:
    """Access to ``answers.sqlite``; safe to share between threads (one connection per call).

    Args:
        path: the database file (created with its tables by :meth:`init`).
        busy_timeout_s: how long a write waits for another writer's lock before it fails
            with reason ``locked``.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection in a transaction, committed on success, always closed."""
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            reason, message = _reason(exc)
            raise AnswerStoreError(
                f"{message}; expected a writable SQLite database", reason=reason, uri=str(self.path)
            ) from exc
        finally:
            if conn is not None:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                conn.close()

    def init(self) -> None:
        """Create the tables (if missing), switch to WAL and prove the file can be written.

        Raises:
            AnswerStoreError: the database cannot be created or written (read-only file or
                folder, full disk, locked).
        """
        try:
            # owner-only from the first byte; SQLite gives -wal and -shm the same mode
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise AnswerStoreError(
                f"cannot create the answer database ({exc}); `medcrypt study serve` needs to "
                "write in the study folder",
                reason="read-only" if exc.errno in (errno.EROFS, errno.EACCES) else "io",
                uri=str(self.path),
            ) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
                conn.executescript(_SCHEMA)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            reason, message = _reason(exc)
            raise AnswerStoreError(
                f"{message}; `medcrypt study serve` needs to write {self.path.name} in the "
                "study folder",
                reason=reason,
                uri=str(self.path),
            ) from exc
        with self._db() as conn:  # a real write transaction: fails now if it cannot later
            conn.execute("CREATE TABLE IF NOT EXISTS _probe (x INTEGER)")
            conn.execute("DROP TABLE _probe")

    # -- answers ---------------------------------------------------------------------------

    def record_answer(
        self,
        *,
        answer_id: str,
        reader: str,
        session: int,
        image_id: str,
        diagnosis: str,
        answered_at: dt.datetime,
        app_version: str,
    ) -> bool:
        """Store one click; False when this ``answer_id`` was stored before (a retry).

        Raises:
            AnswerStoreError: not stored (locked, read-only, full).
            ValueError: the ``answer_id`` was stored before with a different answer.
        """
        with self._db() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO answers (answer_id, reader, session, image_id, diagnosis,"
                " answered_at, app_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    answer_id,
                    reader,
                    session,
                    image_id,
                    diagnosis,
                    answered_at.isoformat(),
                    app_version,
                ),
            )
            if cur.rowcount == 1:
                return True
            old = conn.execute(
                "SELECT reader, session, image_id, diagnosis FROM answers WHERE answer_id = ?",
                (answer_id,),
            ).fetchone()
        if tuple(old) != (reader, session, image_id, diagnosis):
            raise ValueError(
                f"answer ID {answer_id!r} was already used for another answer; expected a new "
                "ID for every click"
            )
        return False

    def answers(self, reader: str | None = None, session: int | None = None) -> list[StoredAnswer]:
        """Every stored click (optionally of one reader / session), oldest first."""
        query = (
            "SELECT row, answer_id, reader, session, image_id, diagnosis, answered_at "
            "FROM answers WHERE (? IS NULL OR reader = ?) AND (? IS NULL OR session = ?) "
            "ORDER BY row"
        )
        with self._db() as conn:
            rows = conn.execute(query, (reader, reader, session, session)).fetchall()
        return [StoredAnswer(r) for r in rows]

    def latest(self, reader: str, session: int) -> dict[str, str]:
        """image ID -> the reader's latest diagnosis for it in this session."""
        return {a.image_id: a.diagnosis for a in self.answers(reader, session)}

    def answered(self, reader: str, session: int) -> int:
        """How many images of one reader's session have an answer."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT COUNT(DISTINCT image_id) FROM answers WHERE reader = ? AND session = ?",
                (reader, session),
            ).fetchone()
        return int(row[0])

    def counts(self) -> dict[tuple[str, int], int]:
        """(reader, session) -> how many images have an answer."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT reader, session, COUNT(DISTINCT image_id) FROM answers "
                "GROUP BY reader, session"
            ).fetchall()
        return {(str(r), int(s)): int(n) for r, s, n in rows}

    # -- sessions --------------------------------------------------------------------------

    def finish(self, reader: str, session: int, when: dt.datetime) -> None:
        with self._db() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO finished (reader, session, finished_at) VALUES (?, ?, ?)",
                (reader, session, when.isoformat()),
            )

    def finished(self) -> dict[tuple[str, int], dt.datetime]:
        with self._db() as conn:
            rows = conn.execute("SELECT reader, session, finished_at FROM finished").fetchall()
        return {(str(r), int(s)): dt.datetime.fromisoformat(str(w)) for r, s, w in rows}

    def open_early(self, reader: str, session: int, when: dt.datetime, days_early: int) -> None:
        with self._db() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO early_openings (reader, session, opened_at, days_early) "
                "VALUES (?, ?, ?, ?)",
                (reader, session, when.isoformat(), days_early),
            )

    def early_openings(self) -> dict[tuple[str, int], tuple[dt.datetime, int]]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT reader, session, opened_at, days_early FROM early_openings"
            ).fetchall()
        return {
            (str(r), int(s)): (dt.datetime.fromisoformat(str(w)), int(d)) for r, s, w, d in rows
        }

    def reopen(self, reader: str, session: int, when: dt.datetime) -> dt.datetime | None:
        """Open a handed-in session again and record it; its old hand-in time, or None when it
        was not handed in."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT finished_at FROM finished WHERE reader = ? AND session = ?",
                (reader, session),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM finished WHERE reader = ? AND session = ?", (reader, session))
            conn.execute(
                "INSERT INTO reopenings (reader, session, reopened_at, finished_at) "
                "VALUES (?, ?, ?, ?)",
                (reader, session, when.isoformat(), str(row[0])),
            )
        return dt.datetime.fromisoformat(str(row[0]))

    def reopenings(self) -> dict[tuple[str, int], list[dt.datetime]]:
        """(reader, session) -> when the coordinator reopened it, oldest first."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT reader, session, reopened_at FROM reopenings ORDER BY rowid"
            ).fetchall()
        out: dict[tuple[str, int], list[dt.datetime]] = {}
        for r, s, w in rows:
            out.setdefault((str(r), int(s)), []).append(dt.datetime.fromisoformat(str(w)))
        return out

    # -- tokens ----------------------------------------------------------------------------

    def replace_tokens(
        self, rows: Sequence[tuple[str, str, str | None]], when: dt.datetime
    ) -> None:
        """Forget every token and store these (sha256 hex, role, reader) instead."""
        with self._db() as conn:
            conn.execute("DELETE FROM tokens")
            conn.executemany(
                "INSERT INTO tokens (token_sha256, role, reader, issued_at) VALUES (?, ?, ?, ?)",
                [(h, role, reader, when.isoformat()) for h, role, reader in rows],
            )

    def tokens(self) -> dict[str, tuple[str, str | None]]:
        """sha256 hex -> (role, reader) of every valid token."""
        with self._db() as conn:
            rows = conn.execute("SELECT token_sha256, role, reader FROM tokens").fetchall()
        return {str(h): (str(role), None if r is None else str(r)) for h, role, r in rows}
