"""``study serve`` under load and faults, over real HTTP to uvicorn on 127.0.0.1.

- 20 readers answer concurrently (one thread and one HTTP client each): both sessions, every
  image twice (the second click changes the diagnosis), 2,000 clicks in all, then hand in.
  Every click has its own ID; the database must hold exactly the 2,000 IDs sent (0 lost,
  0 duplicated), and the tally of the web answers must equal the tally of the same final
  answers given as CSV sheets.
- The same with the server killed (SIGKILL) at a random moment and restarted on the same
  port: clients send again every click they saw no reply for; the figures must not change.
- A database the server cannot write (immutable file, which even root cannot write) gives a
  clear error at start.

Every loop is bounded in count and time; each figure is printed for the closing note.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from _study_fixtures import make_phantom_study
from _study_server import StudyServer, study_links

from medcrypt.study import ingest_sheets, load_key, read_answers, tally
from medcrypt.study.web import ingest_web_answers, prepare_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

READERS = tuple(f"r{i:02d}" for i in range(20))
PASSES = 2  # clicks per image: 20 readers x 2 sessions x 25 images x 2 = 2,000
DEADLINE_S = 150.0


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 readers, 25 cases, both sessions open (started 40 days ago, washout 21); readers may
    change answers (every pass answers each image again)."""
    root = tmp_path_factory.mktemp("load-template")
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=40)
    return make_phantom_study(
        root, READERS, n_per_class=5, size=32, start=start, allow_revisions=True
    )


def _copy(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "study"))


@dataclass
class Client:
    reader: str
    token: str
    url: str
    sent: list[str] = field(default_factory=list)
    final: dict[tuple[int, str], str] = field(default_factory=dict)
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    def _call(self, http: httpx.Client, method: str, path: str, body: object = None) -> dict:
        """One request, sent again on a lost connection or a 5xx until the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        for _attempt in range(10_000):
            if time.monotonic() > deadline:
                break
            try:
                resp = http.request(method, path, json=body)
            except httpx.TransportError:
                self.retries += 1
                time.sleep(0.2)
                continue
            if resp.status_code >= 500:
                self.retries += 1
                time.sleep(0.2)
                continue
            if resp.status_code != 200:
                raise AssertionError(f"{self.reader} {path}: {resp.status_code} {resp.text}")
            return dict(resp.json())
        raise AssertionError(f"{self.reader} {path}: no reply within {DEADLINE_S} s")

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.url,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10.0,
            ) as http:
                for session in (1, 2):
                    state = self._call(http, "GET", "/api/reader")
                    assert state["session"] == session, state
                    classes = state["classes"]
                    for p in range(PASSES):
                        for k, iid in enumerate(state["images"]):
                            diagnosis = classes[(k + p + int(self.reader[1:])) % len(classes)]
                            aid = uuid.uuid4().hex
                            self.sent.append(aid)
                            body = {"answer_id": aid, "image_id": iid, "diagnosis": diagnosis}
                            self._call(http, "POST", "/api/reader/answer", body)
                            self.final[(session, iid)] = diagnosis
                    self._call(http, "POST", "/api/reader/finish", {"session": session})
        except Exception as exc:  # reported by the test, with the reader
            self.errors.append(f"{self.reader}: {exc}")


def _run_clients(study: Path, server: StudyServer) -> list[Client]:
    links = study_links(study)
    clients = [Client(r, links[r], server.url) for r in READERS]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    return clients, threads  # type: ignore[return-value]


def _join(threads: list[threading.Thread]) -> None:
    end = time.monotonic() + DEADLINE_S + 20
    for t in threads:
        t.join(timeout=max(0.1, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "clients still running after the deadline"


def _figures(study: Path, clients: list[Client]) -> dict[str, int]:
    sent = [aid for c in clients for aid in c.sent]
    with sqlite3.connect(study / "answers.sqlite") as db:
        stored = [r[0] for r in db.execute("SELECT answer_id FROM answers")]
    return {
        "sent": len(sent),
        "stored": len(stored),
        "lost": len(set(sent) - set(stored)),
        "duplicated": len(stored) - len(set(stored)),
        "unknown": len(set(stored) - set(sent)),
        "retries": sum(c.retries for c in clients),
    }


def _csv_tally_equals_web_tally(study: Path, csv_study: Path, clients: list[Client]) -> int:
    """Ingest the web answers; give the same final answers as CSV sheets to a copy; compare."""
    key = load_key(study / "unblinding" / "key.json")
    result = ingest_web_answers(key, study)
    assert len(result.sheets) == 2 * len(READERS)
    web = tally(key, read_answers(study / "answers.jsonl", key=key))

    csv_key = load_key(csv_study / "unblinding" / "key.json")
    sheets = []
    for c in clients:
        for session in (1, 2):
            a = csv_key.assignment(c.reader, session)
            path = csv_study / "packets" / c.reader / f"session-{session}"
            sheet = path / f"answers_{c.reader}_session-{session}.csv"
            text = sheet.read_text(encoding="utf-8").splitlines()
            filled = [
                line + c.final[(session, line.split(",")[3])]
                if line and not line.startswith("#") and line.split(",")[3] in a.image_ids
                else line
                for line in text
            ]
            sheet.write_text("\n".join(filled) + "\n", encoding="utf-8")
            sheets.append(sheet)
    ingest_sheets(csv_key, sheets, csv_study / "answers.jsonl")
    paper = tally(csv_key, read_answers(csv_study / "answers.jsonl", key=csv_key))
    for part in ("pooled", "per_reader", "across_readers", "n_answers"):
        assert web.model_dump()[part] == paper.model_dump()[part], part
    return web.pooled.n_pairs


def test_twenty_readers_2000_answers_none_lost_none_duplicated(
    template: Path, tmp_path: Path
) -> None:
    study = _copy(template, tmp_path)
    csv_study = Path(shutil.copytree(template, tmp_path / "csv-study"))
    server = StudyServer(study).start()
    try:
        t0 = time.perf_counter()
        clients, threads = _run_clients(study, server)  # type: ignore[misc]
        _join(threads)
        seconds = time.perf_counter() - t0
    finally:
        server.stop()
    assert [e for c in clients for e in c.errors] == []
    figures = _figures(study, clients)
    print(f"load: {figures} in {seconds:.1f} s")
    assert figures["sent"] == 2000
    assert figures["stored"] == 2000
    assert figures["lost"] == figures["duplicated"] == figures["unknown"] == 0
    assert _csv_tally_equals_web_tally(study, csv_study, clients) == 20 * 25


def test_sigkill_mid_load_and_restart_loses_and_duplicates_nothing(
    template: Path, tmp_path: Path
) -> None:
    study = _copy(template, tmp_path)
    csv_study = Path(shutil.copytree(template, tmp_path / "csv-study"))
    server = StudyServer(study).start()
    try:
        clients, threads = _run_clients(study, server)  # type: ignore[misc]
        # a random moment within the load: once a random number of clicks has been sent
        target = random.randint(200, 1600)
        end = time.monotonic() + 60
        while sum(len(c.sent) for c in clients) < target and time.monotonic() < end:
            time.sleep(0.01)
        before = sum(len(c.sent) for c in clients)
        server.kill()
        killed_rc = server.proc.returncode if server.proc else None
        server.start()
        _join(threads)
    finally:
        server.stop()
    assert killed_rc == -9
    assert [e for c in clients for e in c.errors] == []
    figures = _figures(study, clients)
    print(f"sigkill after {before} clicks sent (target {target}): {figures}")
    assert 0 < before < 2000, "the kill fell outside the load"
    assert figures["retries"] > 0, "no client saw the outage"
    assert figures["sent"] == figures["stored"] == 2000
    assert figures["lost"] == figures["duplicated"] == figures["unknown"] == 0
    assert _csv_tally_equals_web_tally(study, csv_study, clients) == 20 * 25


def test_an_unwritable_database_stops_serve_with_a_clear_error(
    template: Path, tmp_path: Path
) -> None:
    """``chattr +i``: an immutable file refuses writes even to root (file modes do not)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed")
    study = _copy(template, tmp_path)
    prepare_server(study)  # what a first serve does: answers.sqlite (WAL) and the links
    db = study / "answers.sqlite"
    assert not (study / "answers.sqlite-wal").exists()  # checkpointed on close
    flag = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True, check=False)
    if flag.returncode != 0:
        pytest.skip(f"this file system refuses chattr +i: {flag.stderr.strip()}")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "medcrypt", "study", "serve", str(study), "--port", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    print(f"immutable database: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    assert proc.returncode != 0
    assert "read-only" in proc.stderr or "refused to write" in proc.stderr, proc.stderr
    assert "answers.sqlite" in proc.stderr
    assert "Traceback" not in proc.stderr
