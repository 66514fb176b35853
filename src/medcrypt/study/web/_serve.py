"""Start the study web app: open the database, issue or load the links, run uvicorn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette

from medcrypt.study._key import load_key
from medcrypt.study.web._app import create_app
from medcrypt.study.web._guard import AllowedHosts, is_loopback
from medcrypt.study.web._store import DB_NAME, AnswerStore
from medcrypt.study.web._tokens import Links, issue_links, links_path, load_links
from medcrypt.study.web._views import StudyService

__all__ = ["PreparedServer", "is_loopback", "prepare_server", "run_server"]


@dataclass(frozen=True)
class PreparedServer:
    """An app ready to run, with the links to print."""

    app: Starlette
    links: Links
    #: True when the tokens were minted now (old links, if any, stopped working)
    issued: bool
    links_file: Path
    db: Path


def prepare_server(
    study_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_hosts: Sequence[str] = (),
    key_path: Path | None = None,
    reissue_links: bool = False,
) -> PreparedServer:
    """Open ``STUDY/answers.sqlite`` (created on first use), make sure it can be written, and
    mint tokens on the first start or with ``reissue_links``.

    The app answers only requests whose ``Host`` is ``host:port`` (for a loopback ``host``
    also ``localhost`` and ``127.0.0.1`` on that port) or one of ``allowed_hosts``.

    Raises:
        AnswerStoreError: the database cannot be written (read-only, locked, disk full).
        StudyError: the key cannot be read, or tokens exist without their links file.
    """
    study_dir = Path(study_dir)
    key = load_key(key_path or study_dir / "unblinding" / "key.json")
    store = AnswerStore(study_dir / DB_NAME)
    store.init()
    links = None if reissue_links else load_links(study_dir, store)
    issued = links is None
    if links is None:
        links = issue_links(study_dir, store, key.config.readers)
    allowed = AllowedHosts(host, port, allowed_hosts)
    app = create_app(StudyService(study_dir, key, store), allowed=allowed)
    return PreparedServer(app, links, issued, links_path(study_dir), store.path)


def run_server(app: Starlette, host: str, port: int) -> None:  # pragma: no cover - blocks
    """Serve until interrupted (uvicorn; no access log, no server header)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
