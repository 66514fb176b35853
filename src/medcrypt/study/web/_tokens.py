"""Access tokens of the study web app: one per reader, one for the coordinator.

A token is ``secrets.token_urlsafe(32)`` (256 bits). The database keeps only its SHA-256; the
tokens themselves exist in one place, the owner-only file ``STUDY/unblinding/links.txt``
(mode 0600 inside the 0700 folder that holds the unblinding key, which the app never serves),
so that ``medcrypt study serve --show-links`` can print them again (a plain start prints them
only when it issues them, and otherwise only this file's path). Losing the file
means minting new tokens (``--reissue-links``), which makes every old link stop working.

Links carry the token in the URL *fragment* (``http://host:port/#TOKEN``): browsers never
send a fragment to the server, so no access log, proxy log or Referer header sees it; the
page's script sends it as ``Authorization: Bearer`` on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medcrypt._private_files import write_private
from medcrypt.errors import StudyError
from medcrypt.study.web._store import AnswerStore

__all__ = ["COORDINATOR", "Links", "hash_token", "issue_links", "load_links"]

#: the role of the coordinator's token
COORDINATOR = "coordinator"
_TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    """SHA-256 hex of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Links:
    """The tokens of one issue: reader -> token, and the coordinator's."""

    readers: dict[str, str]
    coordinator: str
    issued_at: dt.datetime

    def lines(self, base_url: str) -> list[str]:
        """One line per reader and one for the coordinator, for the given server URL."""
        base = base_url.rstrip("/")
        out = [f"reader {r}: {base}/#{t}" for r, t in self.readers.items()]
        out.append(f"coordinator: {base}/coordinator#{self.coordinator}")
        return out


def links_path(study_dir: Path) -> Path:
    return Path(study_dir) / "unblinding" / "links.txt"


def issue_links(study_dir: Path, store: AnswerStore, readers: Sequence[str]) -> Links:
    """Mint new tokens for every reader and the coordinator; old links stop working.

    The tokens are written to ``STUDY/unblinding/links.txt`` (0600) and their hashes to the
    database.
    """
    now = dt.datetime.now(dt.UTC)
    links = Links(
        readers={r: secrets.token_urlsafe(_TOKEN_BYTES) for r in readers},
        coordinator=secrets.token_urlsafe(_TOKEN_BYTES),
        issued_at=now,
    )
    path = links_path(study_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = {
        "format": "medcrypt-study-links/1",
        "issued_at": now.isoformat(),
        "note": "secret: each link opens one reader's answers; keep with the unblinding key",
        "readers": links.readers,
        "coordinator": links.coordinator,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        write_private(tmp, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))
        os.replace(tmp, path)
    except OSError as exc:
        raise StudyError(f"cannot write the links file: {exc}", uri=str(path)) from exc
    rows: list[tuple[str, str, str | None]] = [
        (hash_token(t), "reader", r) for r, t in links.readers.items()
    ]
    rows.append((hash_token(links.coordinator), COORDINATOR, None))
    store.replace_tokens(rows, now)
    return links


def load_links(study_dir: Path, store: AnswerStore) -> Links | None:
    """The current links from ``links.txt``, or None when there are none to print.

    None when no token was issued yet. Raises :class:`StudyError` when tokens exist but the
    file is missing or does not match them (then only ``--reissue-links`` helps).
    """
    stored = store.tokens()
    if not stored:
        return None
    path = links_path(study_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        links = Links(
            readers={str(k): str(v) for k, v in data["readers"].items()},
            coordinator=str(data["coordinator"]),
            issued_at=dt.datetime.fromisoformat(data["issued_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StudyError(
            f"tokens were issued but their links file cannot be read ({type(exc).__name__}); "
            "run `medcrypt study serve --reissue-links` to mint new links (old ones stop "
            "working)",
            uri=str(path),
        ) from None
    wanted = {hash_token(t) for t in [*links.readers.values(), links.coordinator]}
    if not all(any(hmac.compare_digest(w, h) for h in stored) for w in wanted):
        raise StudyError(
            "the links file does not match the tokens in the answer database; run "
            "`medcrypt study serve --reissue-links`",
            uri=str(path),
        )
    return links
