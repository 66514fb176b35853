"""``study serve`` in a real headless Chromium (Debian's, driven by Playwright).

A reader answers a whole session with the keyboard, closes the browser halfway and comes back
to the same place; window/level and zoom respond; handing in the session leads to session 2,
which the server refuses before its washout date (the date is shown); a database locked by
another program shows the reader a message and the answer is saved once the lock is gone;
the coordinator's page shows the progress. No console error (but the 503 of the lock), no
failed request, and no request leaves the server.

``MEDCRYPT_STUDY_SCREENSHOT=docs/study-reader.png`` also saves the README's screenshot of
the reader's view, taken by this browser.
"""

from __future__ import annotations

import os
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

READERS = ("alice", "bob", "carol")


def _chromium() -> str:
    path = os.environ.get("MEDCRYPT_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on PATH: scripts/test.sh installs Debian's chromium via apt")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StudyServer, Path]]:
    study = make_phantom_study(tmp_path_factory.mktemp("browser"), READERS, size=128)
    server = StudyServer(study).start()
    try:
        yield server, study
    finally:
        server.stop()


class Watch:
    """Console errors, failed requests and every requested URL of one browser context."""

    def __init__(self, context: Any) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        context.on("page", self.page)

    def page(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))


def test_reader_answers_a_session_by_keyboard_resumes_and_meets_the_washout(
    served: tuple[StudyServer, Path],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, study = served
    links = study_links(study)
    key = load_key(study / "unblinding" / "key.json")
    order = key.assignment("alice", 1).image_ids
    n = len(order)
    link = f"{server.url}/#{links['alice']}"
    pressed: dict[str, str] = {}
    watches: list[Watch] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:

            def open_reader() -> tuple[Any, Any]:
                context = browser.new_context(viewport={"width": 1200, "height": 820})
                watches.append(Watch(context))
                page = context.new_page()
                page.goto(link, wait_until="load")
                return context, page

            def answer(page: Any, i: int) -> None:
                expect(page.locator("#position")).to_have_text(f"Image {i + 1} of {n}")
                expect(page.locator("#image-id")).to_have_text(order[i])
                k = i % len(key.config.classes)
                page.keyboard.press(str(k + 1))
                pressed[order[i]] = key.config.classes[k]

            context, page = open_reader()
            expect(page.locator("#instructions")).to_be_visible()
            expect(page.locator("#instructions")).to_contain_text("session 1")
            expect(page.locator("#instructions")).to_contain_text("Diagnose each image on its own")
            page.keyboard.press("Enter")
            expect(page.locator("#viewer")).to_be_visible()
            half = n // 2
            for i in range(half):
                answer(page, i)
            expect(page.locator("#progress")).to_have_text(f"{half} / {n}")
            expect(page.locator("#banner")).to_be_hidden()
            # window/level by dragging, zoom by key; every read after an input waits for the
            # page to redraw (expect retries), so a busy machine cannot fail it
            wl_start = "Window 256 \u00b7 level 128"
            expect(page.locator("#wl")).to_have_text(wl_start)  # this image is drawn
            box = page.locator("#stage").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 - 120, box["y"] + box["height"] / 2 - 60)
            page.mouse.up()
            expect(page.locator("#wl")).not_to_have_text(wl_start)
            page.keyboard.press("+")
            expect(page.locator("#zoom")).to_have_text("125%")
            page.keyboard.press("r")
            expect(page.locator("#zoom")).to_have_text("100%")
            shot = os.environ.get("MEDCRYPT_STUDY_SCREENSHOT")
            if shot:
                page.wait_for_function("document.getElementById('image').width > 0")
                raw = study.parent / "reader-screenshot.png"
                page.screenshot(path=str(raw))
                from PIL import Image

                Image.open(raw).convert("RGB").quantize(colors=128).save(shot, optimize=True)
                assert Path(shot).stat().st_size < 300_000
            context.close()  # the reader closes the browser

            context, page = open_reader()  # ... and opens the link again
            expect(page.locator("#position")).to_have_text(f"Image {half + 1} of {n}")
            expect(page.locator("#progress")).to_have_text(f"{half} / {n}")
            # another program locks the database: the reader is told, the answer stays in
            # the page and is saved once the lock is gone
            blocker = sqlite3.connect(study / "answers.sqlite", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                answer(page, half)
                expect(page.locator("#banner")).to_contain_text("Not saved yet", timeout=20_000)
                expect(page.locator("#banner")).to_contain_text("busy")
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
            for i in range(half + 1, n):
                answer(page, i)
            expect(page.locator("#review")).to_be_visible()
            expect(page.locator("#review-summary")).to_contain_text("Every image has an answer")
            expect(page.locator("#finish")).to_be_enabled()
            page.keyboard.press("Enter")  # hand in
            expect(page.locator("#message")).to_be_visible()
            not_before = key.session_dates[2].isoformat()
            expect(page.locator("#message-text")).to_contain_text(
                f"Session 2 opens on {not_before}"
            )
            context.close()

            context = browser.new_context()
            watches.append(Watch(context))
            page = context.new_page()
            page.goto(f"{server.url}/coordinator#{links['coordinator']}", wait_until="load")
            expect(page.locator("[data-field='progress.alice.1']")).to_have_text(f"{n} / {n}")
            expect(page.locator("[data-field='progress.bob.1']")).to_have_text(f"0 / {n}")
            expect(page.locator("[data-field='timing.alice.2']")).to_have_text(
                "waiting for the washout"
            )
            expect(page.locator("#blinding")).to_contain_text("AUC")
            context.close()
        finally:
            browser.close()

    errors = [e for w in watches for e in w.errors]
    # the browser logs the refused save during the lock (503), and nothing else
    locked = [e for e in errors if "status of 503" in e]
    assert 1 <= len(locked) <= 3 and [e for e in errors if e not in locked] == []
    urls = [u for w in watches for u in w.urls]
    assert urls and all(u.startswith(server.url + "/") for u in urls), urls
    with sqlite3.connect(study / "answers.sqlite") as db:
        rows = db.execute(
            "SELECT image_id, diagnosis FROM answers WHERE reader = 'alice' ORDER BY row"
        ).fetchall()
        done = db.execute("SELECT reader, session FROM finished").fetchall()
    assert dict(rows) == pressed and len(rows) == n  # one click per image, in order
    assert [r[0] for r in rows] == list(order)
    assert done == [("alice", 1)]
