"""The study web app in-process (Starlette's TestClient): sessions, washout, tokens, faults.

Real HTTP against uvicorn (load, SIGKILL, security, the browser) is in
``tests/integration/test_study_serve_*.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.errors import StudyError
from medcrypt.study import load_key, read_answers, tally
from medcrypt.study.web import (
    AllowedHosts,
    AnswerStore,
    StudyService,
    create_app,
    ingest_web_answers,
    issue_links,
    load_links,
    prepare_server,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

URL = "http://127.0.0.1:8765"
ALLOWED = AllowedHosts("127.0.0.1", 8765)


class Served:
    def __init__(self, study: Path, today: dt.date, busy_timeout_s: float = 5.0) -> None:
        self.study = study
        self.now = dt.datetime.combine(today, dt.time(9, 0), tzinfo=dt.UTC)
        self.key = load_key(study / "unblinding" / "key.json")
        self.store = AnswerStore(study / "answers.sqlite", busy_timeout_s=busy_timeout_s)
        self.store.init()
        self.links = issue_links(study, self.store, self.key.config.readers)
        self.service = StudyService(study, self.key, self.store, clock=lambda: self.now)
        self.client = TestClient(create_app(self.service, allowed=ALLOWED), base_url=URL)
        self.n = 0

    def h(self, who: str) -> dict[str, str]:
        token = self.links.coordinator if who == "coordinator" else self.links.readers[who]
        return {"Authorization": f"Bearer {token}"}

    def answer(self, reader: str, iid: str, diagnosis: str, aid: str | None = None) -> Any:
        self.n += 1
        body = {"answer_id": aid or f"click-{self.n:012d}", "image_id": iid}
        body["diagnosis"] = diagnosis
        return self.client.post("/api/reader/answer", headers=self.h(reader), json=body)

    def answer_all(self, reader: str, session: int) -> dict[str, str]:
        a = self.key.assignment(reader, session)
        given = {iid: self.key.images[iid].truth for iid in a.image_ids}
        for iid, diagnosis in given.items():
            assert self.answer(reader, iid, diagnosis).status_code == 200
        r = self.client.post(
            "/api/reader/finish", headers=self.h(reader), json={"session": session}
        )
        assert r.status_code == 200, r.text
        return given


@pytest.fixture
def served(make_study: Callable[..., Any], helpers: Any) -> Iterator[Served]:
    made, _cfg = make_study()
    yield Served(made.study_dir, helpers.start)


@pytest.fixture
def revisable(make_study: Callable[..., Any], helpers: Any) -> Iterator[Served]:
    made, _cfg = make_study(allow_revisions=True)
    yield Served(made.study_dir, helpers.start)


def test_reader_session_resume_finish_and_washout(revisable: Served) -> None:
    served = revisable
    c, key = served.client, served.key
    order = key.assignment("alice", 1).image_ids
    state = c.get("/api/reader", headers=served.h("alice")).json()
    assert state["status"] == "open" and state["session"] == 1 and state["images"] == list(order)
    assert (
        state["resume_at"] == 0 and "Diagnose each image on its own" in state["instructions_html"]
    )
    assert "sheet code" not in state["instructions_html"].lower()
    png = c.get(f"/api/reader/image/{order[0]}", headers=served.h("alice"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    classes = key.config.classes
    for iid in order[:3]:
        assert served.answer("alice", iid, classes[0]).json()["answered"] >= 1
    assert served.answer("alice", order[1], classes[2]).json() == {
        "saved": True,
        "new": True,
        "answered": 3,
        "total": len(order),
    }
    # resume after the image clicked last; the latest click per image counts
    state = c.get("/api/reader", headers=served.h("alice")).json()
    assert state["resume_at"] == 3
    assert state["answers"][order[1]] == classes[2]
    missing = c.post("/api/reader/finish", headers=served.h("alice"), json={"session": 1})
    assert missing.status_code == 409 and missing.json()["missing"] == list(range(4, 11))
    for iid in order[3:]:
        served.answer("alice", iid, classes[1])
    ok = c.post("/api/reader/finish", headers=served.h("alice"), json={"session": 1})
    again = c.post("/api/reader/finish", headers=served.h("alice"), json={"session": 1})
    assert ok.json() == again.json() == {"finished": 1}
    # session 2 is refused before its date, with the date; nothing of it is served
    state = c.get("/api/reader", headers=served.h("alice")).json()
    not_before = key.session_dates[2].isoformat()
    assert state["status"] == "washout" and state["not_before"] == not_before
    assert f"Session 2 opens on {not_before}" in state["message"] and "images" not in state
    iid2 = key.assignment("alice", 2).image_ids[0]
    assert c.get(f"/api/reader/image/{iid2}", headers=served.h("alice")).status_code == 403
    assert served.answer("alice", iid2, classes[0]).status_code == 403
    # and session 1, handed in, takes no more answers (the open session is 2, refused)
    assert served.answer("alice", order[0], classes[4]).status_code == 403
    assert served.store.latest("alice", 1)[order[0]] == classes[0]


def test_a_retried_click_is_stored_once_and_a_reused_id_is_refused(served: Served) -> None:
    iid = served.key.assignment("bob", 1).image_ids[0]
    classes = served.key.config.classes
    first = served.answer("bob", iid, classes[0], aid="same-click-0000001")
    retry = served.answer("bob", iid, classes[0], aid="same-click-0000001")
    assert first.json()["new"] is True and retry.json()["new"] is False
    reused = served.answer("bob", iid, classes[1], aid="same-click-0000001")
    assert reused.status_code == 409 and "already used" in reused.json()["error"]
    assert len(served.store.answers("bob")) == 1
    bad = [
        served.answer("bob", iid, "glioma"),
        served.answer("bob", "zzzz-zzzz-zzzz", classes[0]),
        served.answer("bob", iid, classes[0], aid="short"),
    ]
    assert [r.status_code for r in bad] == [422, 422, 422]
    assert "is not one of" in bad[0].json()["error"]


def test_early_opening_is_recorded_like_allow_early(served: Served) -> None:
    given = served.answer_all("alice", 1)
    c = served.client
    opened = c.post(
        "/api/coordinator/open-early", headers=served.h("coordinator"), json={"reader": "alice"}
    )
    assert opened.json() == {"opened_early": "alice", "days_early": 21}
    given.update(served.answer_all("alice", 2))
    progress = c.get("/api/coordinator", headers=served.h("coordinator")).json()
    row = next(s for s in progress["sessions"] if (s["reader"], s["session"]) == ("alice", 2))
    assert row["opened_early"] and row["timing"] == "early" and row["answered"] == 10
    assert "opened early by the coordinator" in row["timing_detail"]
    ingested = c.post("/api/coordinator/ingest", headers=served.h("coordinator"), json={})
    assert [s["n_answers"] for s in ingested.json()["stored"]] == [10, 10]
    records = read_answers(served.study / "answers.jsonl", key=served.key)
    assert {r.image_id: r.diagnosis for r in records} == given
    assert [r.allowed_early for r in records] == [False] * 10 + [True] * 10
    assert all(r.answered_at is not None for r in records)
    # ingesting again is a no-op; the tally button reports the figures
    again = c.post("/api/coordinator/tally", headers=served.h("coordinator"), json={})
    assert again.status_code == 200 and len(again.json()["ingest"]["skipped"]) == 2
    assert "opened early by the coordinator" in again.json()["report_html"]
    assert (served.study / "report" / "report.json").is_file()


def test_web_and_paper_answers_mix_in_one_tally(served: Served, helpers: Any) -> None:
    """alice answers in the app, bob on paper sheets: one log, one tally, one validator."""
    served.now += dt.timedelta(days=30)  # both sessions open
    web = {**served.answer_all("alice", 1), **served.answer_all("alice", 2)}
    sheets = []
    for session in (1, 2):
        a = served.key.assignment("bob", session)
        folder = served.study / "packets" / "bob" / f"session-{session}"
        sheet = folder / f"answers_bob_session-{session}.csv"
        sheets.append(
            helpers.fill_sheet(sheet, {i: served.key.images[i].truth for i in a.image_ids})
        )
    # the study starts 2026-12-01: on paper, session 2 before 12-22 needs --allow-early
    res = CliRunner().invoke(
        main, ["study", "ingest", str(served.study), "--allow-early", *map(str, sheets)]
    )
    assert res.exit_code == 0, res.output
    assert "answers.sqlite:answers_alice_session-1.csv" in res.output
    records = read_answers(served.study / "answers.jsonl", key=served.key)
    assert {r.reader for r in records} == {"alice", "bob"} and len(records) == 40
    assert {r.image_id: r.diagnosis for r in records if r.reader == "alice"} == web
    report = tally(served.key, records)
    assert report.pooled.n_pairs == 20
    # the web session's sheet is byte for byte the sheet a reader would have filled in
    key = served.key
    assert ingest_web_answers(key, served.study).skipped == (
        "answers.sqlite:answers_alice_session-1.csv",
        "answers.sqlite:answers_alice_session-2.csv",
    )


def test_a_locked_database_gives_503_and_the_click_is_saved_on_retry(
    make_study: Callable[..., Any], helpers: Any
) -> None:
    made, _ = make_study()
    served = Served(made.study_dir, helpers.start, busy_timeout_s=0.2)
    iid = served.key.assignment("carol", 1).image_ids[0]
    diagnosis = served.key.config.classes[0]
    blocker = sqlite3.connect(made.study_dir / "answers.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        r = served.answer("carol", iid, diagnosis, aid="locked-click-000001")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert r.status_code == 503
    assert r.json()["reason"] == "locked"
    assert "busy" in r.json()["error"] and "kept in this browser" in r.json()["error"]
    r = served.answer("carol", iid, diagnosis, aid="locked-click-000001")
    assert r.status_code == 200 and r.json()["new"] is True
    assert len(served.store.answers("carol")) == 1


def test_a_read_only_database_gives_a_clear_503(served: Served, monkeypatch: Any) -> None:
    """SQLite opened read-only (``mode=ro``) really refuses the write, also for root."""
    path = served.store.path
    real_connect = sqlite3.connect

    def read_only(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    iid = served.key.assignment("alice", 1).image_ids[0]
    r = served.answer("alice", iid, served.key.config.classes[0])
    assert r.status_code == 503 and r.json()["reason"] == "read-only"
    assert "read-only" in r.json()["error"]
    monkeypatch.undo()
    assert served.store.answers() == []


def test_tokens_are_stored_hashed_and_reissuing_revokes_the_old_links(served: Served) -> None:
    links_file = served.study / "unblinding" / "links.txt"
    assert stat.S_IMODE(links_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((served.study / "answers.sqlite").stat().st_mode) == 0o600
    raw = (served.study / "answers.sqlite").read_bytes()
    wal = served.study / "answers.sqlite-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    tokens = [*served.links.readers.values(), served.links.coordinator]
    assert all(len(t) >= 43 for t in tokens)  # 32 bytes = 256 bits, base64url
    assert not any(t.encode() in raw for t in tokens)
    assert load_links(served.study, served.store) == served.links
    old = served.h("alice")
    new = issue_links(served.study, served.store, served.key.config.readers)
    client = TestClient(create_app(served.service, allowed=ALLOWED), base_url=URL)
    assert client.get("/api/reader", headers=old).status_code == 401
    fresh = {"Authorization": f"Bearer {new.readers['alice']}"}
    assert client.get("/api/reader", headers=fresh).status_code == 200
    links_file.unlink()
    with pytest.raises(StudyError, match="--reissue-links"):
        load_links(served.study, served.store)


def test_cli_serve_prints_the_links_once_and_warns_off_loopback(
    make_study: Callable[..., Any], monkeypatch: Any
) -> None:
    made, _ = make_study()
    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(
        "medcrypt.study.web.run_server", lambda app, host, port: ran.append((host, port))
    )
    runner = CliRunner()
    first = runner.invoke(main, ["study", "serve", str(made.study_dir), "--port", "9001"])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].startswith("new links issued")
    links = [ln for ln in lines if ln.startswith(("reader ", "coordinator: "))]
    assert len(links) == 4 and all("http://127.0.0.1:9001/" in ln for ln in links)
    assert "warning" not in first.output
    data = json.loads((made.study_dir / "unblinding" / "links.txt").read_text())
    tokens = [*data["readers"].values(), data["coordinator"]]
    # a later start prints where the links are, never a token (its output may be logged)
    again = runner.invoke(main, ["study", "serve", str(made.study_dir), "--host", "0.0.0.0"])
    assert again.exit_code == 0, again.output
    assert "new links issued" not in again.stdout
    assert not any(t in again.output for t in tokens)
    assert "unblinding/links.txt" in again.stdout and "--show-links" in again.stdout
    assert "Put a TLS reverse proxy in front" in again.stderr
    assert "--allowed-host" in again.stderr
    # ... unless asked to
    shown = runner.invoke(main, ["study", "serve", str(made.study_dir), "--show-links"])
    assert shown.exit_code == 0, shown.output
    assert [ln for ln in shown.stdout.splitlines() if ln.startswith(("reader ", "coord"))] == [
        ln.replace(":9001", ":8765") for ln in links
    ]
    assert ran == [("127.0.0.1", 9001), ("0.0.0.0", 8765), ("127.0.0.1", 8765)]
    assert set(data["readers"]) == {"alice", "bob", "carol"}
    prepared = prepare_server(made.study_dir, reissue_links=True)
    assert prepared.issued and prepared.links.readers != data["readers"]


def test_cli_ingest_needs_sheets_or_web_answers(make_study: Callable[..., Any]) -> None:
    made, _ = make_study()
    res = CliRunner().invoke(main, ["study", "ingest", str(made.study_dir)])
    assert res.exit_code == 2
    assert "expected answer sheets to ingest, or web answers" in res.output
