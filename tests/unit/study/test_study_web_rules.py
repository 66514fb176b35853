"""The study web app's rules, in-process: revisions as the study says, strict request bodies,
reopening a handed-in session, the Host check, and the tally as HTML with its chart."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.study import load_key
from medcrypt.study._packet import instructions_html
from medcrypt.study.web import AllowedHosts, AnswerStore, StudyService, create_app, issue_links

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

URL = "http://127.0.0.1:8765"


class App:
    def __init__(self, study: Path, today: dt.date, hosts: tuple[str, ...] = ()) -> None:
        self.study = study
        self.now = dt.datetime.combine(today, dt.time(9, 0), tzinfo=dt.UTC)
        self.key = load_key(study / "unblinding" / "key.json")
        self.store = AnswerStore(study / "answers.sqlite")
        self.store.init()
        self.links = issue_links(study, self.store, self.key.config.readers)
        service = StudyService(study, self.key, self.store, clock=lambda: self.now)
        allowed = AllowedHosts("127.0.0.1", 8765, hosts)
        self.client = TestClient(create_app(service, allowed=allowed), base_url=URL)
        self.n = 0

    def h(self, who: str) -> dict[str, str]:
        token = self.links.coordinator if who == "coordinator" else self.links.readers[who]
        return {"Authorization": f"Bearer {token}"}

    def answer(self, reader: str, iid: str, diagnosis: str, aid: str | None = None) -> Any:
        self.n += 1
        body = {"answer_id": aid or f"click-{self.n:012d}", "image_id": iid}
        body["diagnosis"] = diagnosis
        return self.client.post("/api/reader/answer", headers=self.h(reader), json=body)


@pytest.fixture
def app(make_study: Callable[..., Any], helpers: Any) -> App:
    made, _cfg = make_study()
    return App(made.study_dir, helpers.start)


def test_no_revisions_by_default_page_instructions_and_server_agree(app: App) -> None:
    order = app.key.assignment("alice", 1).image_ids
    classes = app.key.config.classes
    assert app.key.config.allow_revisions is False
    state = app.client.get("/api/reader", headers=app.h("alice")).json()
    assert state["allow_revisions"] is False
    assert (
        "go back" in state["instructions_html"] and "Do not compare" in state["instructions_html"]
    )
    packet = (app.study / "packets" / "alice" / "session-1" / "packet.html").read_text()
    assert "Do not compare images, go back, or discuss" in packet
    assert app.answer("alice", order[0], classes[0], aid="first-click-0001").status_code == 200
    # a retry of the same click is fine; a new click on the same image is refused
    assert app.answer("alice", order[0], classes[0], aid="first-click-0001").status_code == 200
    changed = app.answer("alice", order[0], classes[1])
    assert changed.status_code == 409
    assert "does not allow changing an answer" in changed.json()["error"]
    assert app.store.latest("alice", 1) == {order[0]: classes[0]}
    assert len(app.store.answers("alice", 1)) == 1


def test_revisions_allowed_when_the_study_says_so(
    make_study: Callable[..., Any], helpers: Any, tmp_path: Path
) -> None:
    made, cfg = make_study(allow_revisions=True)
    a = App(made.study_dir, helpers.start)
    order = a.key.assignment("alice", 1).image_ids
    state = a.client.get("/api/reader", headers=a.h("alice")).json()
    assert state["allow_revisions"] is True
    assert "You may go back and change an answer" in state["instructions_html"]
    assert "go back, or" not in state["instructions_html"]
    packet = (made.study_dir / "packets" / "alice" / "session-1" / "packet.html").read_text()
    assert "You may go back and change an answer" in packet
    assert a.answer("alice", order[0], cfg.classes[0]).status_code == 200
    assert a.answer("alice", order[0], cfg.classes[1]).status_code == 200
    assert a.store.latest("alice", 1) == {order[0]: cfg.classes[1]}


def test_a_key_written_before_the_setting_existed_means_no_revisions(
    make_study: Callable[..., Any], helpers: Any
) -> None:
    import json

    made, _ = make_study()
    path = made.study_dir / "unblinding" / "key.json"
    data = json.loads(path.read_text())
    del data["config"]["allow_revisions"]  # as every key before this setting
    path.write_text(json.dumps(data))
    key = load_key(path)
    assert key.config.allow_revisions is False
    a = key.assignment("alice", 1)
    assert "go back, or discuss" in instructions_html(key.config, a, key.session_dates, web=True)


def test_cli_create_sets_revisions(tmp_path: Path, phantoms: Any, helpers: Any) -> None:
    import yaml

    cfg = helpers.make_config()
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["study", "create", str(config)]
    src = ["--originals", str(phantoms.originals), "--protected", str(phantoms.protected)]
    src += ["--labels", str(phantoms.labels)]
    res = CliRunner().invoke(main, [*args, str(tmp_path / "yes"), *src, "--allow-revisions"])
    assert res.exit_code == 0, res.output
    assert "readers may go back and change answers" in res.output
    assert load_key(tmp_path / "yes" / "unblinding" / "key.json").config.allow_revisions
    res = CliRunner().invoke(main, [*args, str(tmp_path / "no"), *src])
    assert res.exit_code == 0, res.output
    assert "readers may not go back" in res.output
    assert not load_key(tmp_path / "no" / "unblinding" / "key.json").config.allow_revisions


@pytest.mark.parametrize("session", [True, 1.0, "1", None, [1], 3])
def test_hand_in_takes_only_an_int_session(app: App, session: object) -> None:
    r = app.client.post("/api/reader/finish", headers=app.h("alice"), json={"session": session})
    assert r.status_code == 422, r.text
    assert "session" in r.json()["error"]
    assert app.store.finished() == {}


@pytest.mark.parametrize(
    "body",
    [
        {"answer_id": True, "image_id": "x", "diagnosis": "y"},
        {"answer_id": "a" * 20, "image_id": 1.0, "diagnosis": "y"},
        {"answer_id": "a" * 20, "image_id": "x", "diagnosis": 3},
        {"answer_id": "a" * 20, "image_id": "x", "diagnosis": "y", "extra": 1},
        ["a" * 20, "x", "y"],
    ],
)
def test_an_answer_body_is_strict(app: App, body: object) -> None:
    r = app.client.post("/api/reader/answer", headers=app.h("alice"), json=body)
    assert r.status_code == 422, r.text
    assert app.store.answers() == []


def test_coordinator_bodies_are_strict(app: App) -> None:
    c = app.h("coordinator")
    for path, body in [
        ("/api/coordinator/open-early", {"reader": True}),
        ("/api/coordinator/reopen", {"reader": "alice", "session": True}),
        ("/api/coordinator/reopen", {"reader": "alice", "session": 1.0}),
        ("/api/coordinator/ingest", {"anything": 1}),
    ]:
        r = app.client.post(path, headers=c, json=body)
        assert r.status_code == 422, (path, body, r.text)


def test_the_coordinator_reopens_a_handed_in_session_recorded(
    make_study: Callable[..., Any], helpers: Any
) -> None:
    made, _ = make_study(allow_revisions=True)
    a = App(made.study_dir, helpers.start)
    c = a.h("coordinator")
    order = a.key.assignment("alice", 1).image_ids
    refused = a.client.post(
        "/api/coordinator/reopen", headers=c, json={"reader": "alice", "session": 1}
    )
    assert refused.status_code == 409 and "not handed in" in refused.json()["error"]
    for iid in order:
        a.answer("alice", iid, a.key.images[iid].truth)
    fin = a.client.post("/api/reader/finish", headers=a.h("alice"), json={"session": 1})
    assert fin.status_code == 200
    a.now += dt.timedelta(hours=1)
    r = a.client.post("/api/coordinator/reopen", headers=c, json={"reader": "alice", "session": 1})
    assert r.status_code == 200, r.text
    assert r.json()["was_finished_at"].startswith(helpers.start.isoformat())
    state = a.client.get("/api/reader", headers=a.h("alice")).json()
    assert state["status"] == "open" and state["session"] == 1
    progress = a.client.get("/api/coordinator", headers=c).json()
    row = next(s for s in progress["sessions"] if (s["reader"], s["session"]) == ("alice", 1))
    assert row["finished_at"] is None and row["reopened_at"] == [a.now.isoformat()]
    assert a.store.reopenings() == {("alice", 1): [a.now]}
    # a reader's answer to a reopened session is stored; handing in again works
    assert a.answer("alice", order[0], a.key.config.classes[0]).status_code == 200
    assert (
        a.client.post("/api/reader/finish", headers=a.h("alice"), json={"session": 1}).status_code
        == 200
    )
    # the tally's report names the reopening, like an early opening
    for reader in a.key.config.readers:
        if reader != "alice":
            for iid in a.key.assignment(reader, 1).image_ids:
                a.answer(reader, iid, a.key.images[iid].truth)
            a.client.post("/api/reader/finish", headers=a.h(reader), json={"session": 1})
    r = a.client.post("/api/coordinator/tally", headers=c, json={})
    assert r.status_code == 200, r.text
    assert "reopened by the coordinator" in r.json()["report_html"]
    report_md = (made.study_dir / "report" / "report.md").read_text()
    assert "session 1 of reader 'alice' was reopened by the coordinator" in report_md


def test_a_foreign_host_or_origin_is_refused(app: App) -> None:
    order = app.key.assignment("alice", 1).image_ids
    body = {"answer_id": "b" * 20, "image_id": order[0], "diagnosis": app.key.config.classes[0]}
    evil = {"host": "evil.example", "origin": "http://evil.example"}
    r = app.client.post("/api/reader/answer", headers={**app.h("alice"), **evil}, json=body)
    assert r.status_code == 400
    assert app.client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert app.client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    r = app.client.post(
        "/api/reader/answer",
        headers={**app.h("alice"), "origin": "http://evil.example"},
        json=body,
    )
    assert r.status_code == 403
    assert app.store.answers() == []


def test_allowed_hosts() -> None:
    hosts = AllowedHosts("127.0.0.1", 8765, ["study.example.org", "proxy.lan:8443"])
    assert hosts.host_ok("127.0.0.1:8765") and hosts.host_ok("LOCALHOST:8765")
    assert hosts.host_ok("study.example.org") and hosts.host_ok("proxy.lan:8443")
    assert not hosts.host_ok("127.0.0.1:9999") and not hosts.host_ok("evil.example")
    assert not hosts.host_ok("proxy.lan") and not hosts.host_ok(None)
    assert hosts.origin_ok("https://study.example.org")
    assert hosts.origin_ok("https://study.example.org:443")
    assert hosts.origin_ok("http://127.0.0.1:8765")
    assert not hosts.origin_ok("http://evil.example") and not hosts.origin_ok("null")
    public = AllowedHosts("0.0.0.0", 8765)
    assert not public.host_ok("localhost:8765")


def test_the_tally_comes_back_as_html_with_its_chart(app: App, helpers: Any) -> None:
    c = app.h("coordinator")
    assert app.client.get("/api/coordinator/report/figure6.png", headers=c).status_code == 404
    for reader in app.key.config.readers:
        order = app.key.assignment(reader, 1).image_ids
        for iid in order:
            app.answer(reader, iid, app.key.images[iid].truth)
        app.client.post("/api/reader/finish", headers=app.h(reader), json={"session": 1})
    r = app.client.post("/api/coordinator/tally", headers=c, json={})
    assert r.status_code == 200, r.text
    html = r.json()["report_html"]
    assert "report_markdown" not in r.json()
    assert html.startswith("<h1>Reader study") and "<table>" in html
    assert '<img src="/api/coordinator/report/figure6.png"' in html
    assert "![Figure 6]" not in html and "<script" not in html
    png = app.client.get("/api/coordinator/report/figure6.png", headers=c)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert (
        app.client.get("/api/coordinator/report/figure6.png", headers=app.h("alice")).status_code
        == 403
    )
