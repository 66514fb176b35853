"""The reader's and the coordinator's pages in a real headless Chromium: what a reader can
lose, reach and see, and what the coordinator sees of the tally.

- an answer given while the server is down survives closing the page (kept in the browser's
  storage under a hash of the token, sent again on the next open, stored once);
- a zoomed image pans (middle-button drag, Space + drag) to every edge, while a plain drag
  stays window/level;
- window/level and zoom start afresh on every image unless "Keep" is ticked;
- without revisions there is no going back; with them, the reader can change an answer;
- after hand-in the header no longer shows the old session; the banner's sentences are
  separated and the counter counts only saved answers;
- the coordinator's tally is HTML with its Figure 6 chart, and a handed-in session can be
  reopened (recorded).

Every read after an input goes through Playwright's retrying ``expect`` (or a polled
``wait_for_function``), never an immediate read.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _study_fixtures import make_phantom_study
from _study_server import StudyServer, study_links

from medcrypt.study import load_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

READERS = ("alice", "bob")
WL_START = "Window 256 \u00b7 level 128"


def _chromium() -> str:
    path = os.environ.get("MEDCRYPT_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on PATH: scripts/test.sh installs Debian's chromium via apt")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _study(tmp_path: Path, **kw: Any) -> Path:
    return make_phantom_study(tmp_path, READERS, size=128, **kw)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StudyServer]:
    kw = getattr(request, "param", {})
    s = StudyServer(_study(tmp_path, **kw)).start()
    try:
        yield s
    finally:
        s.stop()


def _reader(browser: Any, server: StudyServer, who: str = "alice") -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    page.goto(f"{server.url}/#{study_links(server.study_dir)[who]}", wait_until="load")
    return context, page


def _begin(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#instructions")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer")).to_be_visible()


def _at(page: Any, i: int, n: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#position")).to_have_text(f"Image {i + 1} of {n}")


def _drawn(page: Any) -> None:
    """Wait until the current image is drawn (the viewer writes window/level when it is)."""
    page.wait_for_function("document.getElementById('image').width > 0")


def test_an_answer_given_while_the_server_is_down_survives_closing_the_page(
    browser: Any, server: StudyServer
) -> None:
    from playwright.sync_api import expect

    key = load_key(server.study_dir / "unblinding" / "key.json")
    order = key.assignment("alice", 1).image_ids
    classes = key.config.classes
    n = len(order)
    token = study_links(server.study_dir)["alice"]
    context, page = _reader(browser, server)
    _begin(page)
    for i in range(2):
        _at(page, i, n)
        page.keyboard.press(str(i + 1))
    expect(page.locator("#progress")).to_have_text(f"2 / {n}")
    server.kill()  # the server goes down
    _at(page, 2, n)
    page.keyboard.press("3")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Not saved yet: the study server cannot be reached. 1 answer")
    expect(banner).to_have_text(re.compile(r"reached\. 1 answer\(s\) are kept in this browser"))
    # the counter counts saved answers; the waiting one is named apart
    expect(page.locator("#progress")).to_have_text(f"2 / {n} (+1 not saved yet)")
    stored = page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert token not in stored and order[2] in stored  # kept under a hash, not the token
    page.close(run_before_unload=True)  # the reader closes the tab (no prompt needed)

    server.start()  # the server comes back; the reader opens the link again
    page = context.new_page()
    page.goto(f"{server.url}/#{token}", wait_until="load")
    _at(page, 3, n)
    expect(page.locator("#progress")).to_have_text(f"3 / {n}")
    page.wait_for_function(
        "Object.keys(localStorage).filter(k => k.startsWith('medcrypt-outbox')).length === 0"
    )
    page.reload(wait_until="load")  # opening once more sends nothing twice
    expect(page.locator("#progress")).to_have_text(f"3 / {n}")
    context.close()
    with sqlite3.connect(server.study_dir / "answers.sqlite") as db:
        rows = db.execute(
            "SELECT image_id, diagnosis FROM answers WHERE reader = 'alice' ORDER BY row"
        ).fetchall()
    assert rows == [(order[i], classes[i]) for i in range(3)]  # image 3 stored, once


def test_a_zoomed_image_pans_to_every_edge_and_a_drag_stays_window_level(
    browser: Any, server: StudyServer
) -> None:
    from playwright.sync_api import expect

    context, page = _reader(browser, server)
    _begin(page)
    _drawn(page)
    expect(page.locator("#wl")).to_have_text(WL_START)
    for _ in range(10):
        page.keyboard.press("+")
    expect(page.locator("#zoom")).to_have_text("800%")
    box = page.locator("#stage").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    edges = (
        "(() => { const s = document.getElementById('stage').getBoundingClientRect();"
        " const c = document.getElementById('image').getBoundingClientRect();"
        " return {left: c.left - s.left, right: c.right - s.right,"
        " top: c.top - s.top, bottom: c.bottom - s.bottom}; })()"
    )

    def pan(dx: float, dy: float, how: str) -> None:
        page.mouse.move(cx, cy)
        if how == "space":
            page.keyboard.down(" ")
            page.mouse.down()
        else:
            page.mouse.down(button="middle")
        page.mouse.move(cx + dx, cy + dy, steps=4)
        if how == "space":
            page.mouse.up()
            page.keyboard.up(" ")
        else:
            page.mouse.up(button="middle")

    start = page.evaluate(edges)
    assert start["left"] < -100 and start["right"] > 100  # zoomed past both sides
    for _ in range(4):  # drag the image right and down: its top-left corner comes into view
        pan(2000, 2000, "middle")
    page.wait_for_function(
        f"(() => {{ const e = {edges}; return e.left >= -1 && e.top >= -1; }})()"
    )
    for _ in range(4):  # and with Space held, left and up: the bottom-right corner
        pan(-2000, -2000, "space")
    page.wait_for_function(
        f"(() => {{ const e = {edges}; return e.right <= 1 && e.bottom <= 1; }})()"
    )
    expect(page.locator("#wl")).to_have_text(WL_START)  # panning left window/level alone
    pan_free = page.evaluate("document.getElementById('stage').scrollLeft")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy, steps=4)
    page.mouse.up()
    expect(page.locator("#wl")).not_to_have_text(WL_START)  # a plain drag: window/level
    assert page.evaluate("document.getElementById('stage').scrollLeft") == pan_free
    context.close()


def test_window_level_and_zoom_start_afresh_per_image_unless_kept(
    browser: Any, server: StudyServer
) -> None:
    from playwright.sync_api import expect

    key = load_key(server.study_dir / "unblinding" / "key.json")
    n = len(key.assignment("alice", 1).image_ids)
    context, page = _reader(browser, server)
    _begin(page)
    _drawn(page)

    def change_view() -> None:
        expect(page.locator("#wl")).to_have_text(WL_START)
        page.keyboard.press("+")
        expect(page.locator("#zoom")).to_have_text("125%")
        box = page.locator("#stage").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 300, box["y"] + 300)
        page.mouse.down()
        page.mouse.move(box["x"] + 200, box["y"] + 250, steps=3)
        page.mouse.up()
        expect(page.locator("#wl")).to_have_text(changed)  # width 256 - 100, level 128 + 50 / 2

    changed = "Window 156 \u00b7 level 153"
    change_view()
    page.keyboard.press("1")
    _at(page, 1, n)
    expect(page.locator("#zoom")).to_have_text("100%")
    expect(page.locator("#wl")).to_have_text(WL_START)
    expect(page.locator("#carry-view")).not_to_be_checked()
    change_view()
    page.locator("#carry-view").check()
    page.keyboard.press("2")
    _at(page, 2, n)
    expect(page.locator("#zoom")).to_have_text("125%")
    expect(page.locator("#wl")).to_have_text(changed)
    context.close()


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_without_revisions_there_is_no_going_back_and_hand_in_clears_the_header(
    browser: Any, server: StudyServer
) -> None:
    from playwright.sync_api import expect

    key = load_key(server.study_dir / "unblinding" / "key.json")
    order = key.assignment("alice", 1).image_ids
    n = len(order)
    context, page = _reader(browser, server)
    expect(page.locator("#instructions")).to_contain_text("go back, or discuss")
    _begin(page)
    expect(page.locator("#prev")).to_be_hidden()
    page.keyboard.press("1")
    _at(page, 1, n)
    page.keyboard.press("ArrowLeft")  # does nothing
    page.locator("#to-review").click()
    expect(page.locator("#review")).to_be_visible()
    page.locator("#unanswered button").first.click()  # an unanswered image: allowed
    _at(page, 1, n)
    for i in range(1, n):
        _at(page, i, n)
        page.keyboard.press("2")
    expect(page.locator("#review-summary")).to_contain_text("Every image has an answer")
    expect(page.locator("#progress")).to_have_text(f"{n} / {n}")
    page.locator("#back").click()  # back to the images: the answered ones stay locked
    expect(page.locator("#current")).to_contain_text("cannot be changed")
    expect(page.locator("#choices button").first).to_be_disabled()
    page.locator("#to-review").click()
    page.keyboard.press("Enter")  # hand in
    expect(page.locator("#message-text")).to_contain_text("Session 2 opens on")
    expect(page.locator("#progress")).to_have_text("")
    expect(page.locator("#title")).not_to_contain_text("session 1")
    expect(page.locator("#title")).to_have_text("Reader study \u2014 alice")
    context.close()
    with sqlite3.connect(server.study_dir / "answers.sqlite") as db:
        count = db.execute("SELECT COUNT(*) FROM answers WHERE reader = 'alice'").fetchone()
    assert count == (n,)  # one answer per image, none changed


@pytest.mark.parametrize("server", [{"allow_revisions": True}], indirect=True)
def test_with_revisions_the_reader_goes_back_and_changes_an_answer(
    browser: Any, server: StudyServer
) -> None:
    from playwright.sync_api import expect

    key = load_key(server.study_dir / "unblinding" / "key.json")
    order = key.assignment("alice", 1).image_ids
    classes = key.config.classes
    n = len(order)
    context, page = _reader(browser, server)
    expect(page.locator("#instructions")).to_contain_text("You may go back and change an answer")
    _begin(page)
    expect(page.locator("#prev")).to_be_visible()
    page.keyboard.press("1")
    _at(page, 1, n)
    page.keyboard.press("ArrowLeft")
    _at(page, 0, n)
    expect(page.locator("#current")).to_have_text("Your answer: " + classes[0].replace("_", " "))
    page.keyboard.press("3")
    _at(page, 1, n)
    expect(page.locator("#progress")).to_have_text(f"1 / {n}")
    context.close()
    with sqlite3.connect(server.study_dir / "answers.sqlite") as db:
        rows = db.execute("SELECT image_id, diagnosis FROM answers ORDER BY row").fetchall()
    assert rows == [(order[0], classes[0]), (order[0], classes[2])]


@pytest.mark.parametrize(
    "server",
    [{"start": dt.datetime.now(dt.UTC).date() - dt.timedelta(days=40)}],
    indirect=True,
)
def test_the_coordinator_sees_the_tally_as_html_with_its_chart_and_reopens_a_session(
    browser: Any, server: StudyServer
) -> None:
    import httpx
    from playwright.sync_api import expect

    key = load_key(server.study_dir / "unblinding" / "key.json")
    links = study_links(server.study_dir)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for reader in READERS:
            auth = {"Authorization": f"Bearer {links[reader]}"}
            for session in (1, 2):
                for k, iid in enumerate(key.assignment(reader, session).image_ids):
                    body = {"answer_id": f"{reader}-{session}-{k:012d}", "image_id": iid}
                    body["diagnosis"] = key.images[iid].truth
                    assert http.post("/api/reader/answer", headers=auth, json=body).is_success
                r = http.post("/api/reader/finish", headers=auth, json={"session": session})
                assert r.is_success, r.text
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{server.url}/coordinator#{links['coordinator']}", wait_until="load")
    expect(page.locator("[data-field='progress.alice.1']")).to_have_text(
        f"{len(key.assignment('alice', 1).image_ids)} / {len(key.assignment('alice', 1).image_ids)}"
    )
    page.locator("#tally").click()
    report = page.locator("#report")
    expect(report.locator("h1")).to_contain_text("tally", timeout=60_000)
    expect(report.locator("table").first).to_be_visible()
    page.wait_for_function(
        "(() => { const i = document.querySelector('#report img');"
        " return i && i.complete && i.naturalWidth > 100; })()",
        timeout=30_000,
    )
    expect(page.locator("body")).not_to_contain_text("![Figure 6]")
    expect(page.locator("#result")).not_to_contain_text("# Reader study")
    # reopen bob's session 2: recorded, and bob can open it again
    page.locator("[data-action='reopen.bob.2']").click()
    expect(page.locator("[data-field='timing.bob.2']")).to_contain_text(
        "reopened by the coordinator"
    )
    context.close()
    with sqlite3.connect(server.study_dir / "answers.sqlite") as db:
        assert db.execute("SELECT reader, session FROM reopenings").fetchall() == [("bob", 2)]
        assert ("bob", 2) not in db.execute("SELECT reader, session FROM finished").fetchall()
