"""medcrypt.study.web: the reader study as a web app on the coordinator's own machine.

``medcrypt study serve STUDY`` serves the study ``study create`` wrote: each reader opens a
link, sees the packet's images one at a time in its order (window/level, zoom) and clicks a
diagnosis; every click is committed to ``STUDY/answers.sqlite`` before the page hears back.
The coordinator's link shows progress and runs ingest and tally. Finished web sessions go
through the answer sheets' own validation into ``answers.jsonl`` (:func:`ingest_web_answers`),
so a study can mix web and paper answers. Never imports torch.
"""

from __future__ import annotations

from medcrypt.study.web._app import SECURITY_HEADERS, create_app
from medcrypt.study.web._guard import MAX_BODY, AllowedHosts
from medcrypt.study.web._requests import Refusal
from medcrypt.study.web._serve import PreparedServer, is_loopback, prepare_server, run_server
from medcrypt.study.web._sheets import ingest_web_answers, reopening_notes, web_sheets
from medcrypt.study.web._store import DB_NAME, AnswerStore, StoredAnswer
from medcrypt.study.web._tokens import Links, hash_token, issue_links, load_links
from medcrypt.study.web._views import APP_VERSION, StudyService

__all__ = [
    "APP_VERSION",
    "DB_NAME",
    "MAX_BODY",
    "SECURITY_HEADERS",
    "AllowedHosts",
    "AnswerStore",
    "Links",
    "PreparedServer",
    "Refusal",
    "StoredAnswer",
    "StudyService",
    "create_app",
    "hash_token",
    "ingest_web_answers",
    "is_loopback",
    "issue_links",
    "load_links",
    "prepare_server",
    "reopening_notes",
    "run_server",
    "web_sheets",
]
