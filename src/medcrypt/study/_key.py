"""The unblinding key: which opaque image ID is which case and version, and the study secret.

The key is the only file that links a packet image to its case, its version and its ground
truth, and the only place the study secret is kept. It is written apart from the packets,
created with owner-only permissions (``0o600`` given to ``os.open``, so there is no moment
when it is readable by others), and never logged.

Opaque IDs are ``HMAC-SHA256(secret, "image" | case_id | version)``, shortened and written in
base32: without the secret nobody can tell which two IDs belong to one patient or which is the
protected one; with it the coordinator can recompute every ID.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import stat
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, ValidationError

from medcrypt._private_files import write_private
from medcrypt.config import StrictModel
from medcrypt.errors import StudyError
from medcrypt.study._config import StudyConfig

__all__ = [
    "KEY_FORMAT",
    "VERSIONS",
    "ImageEntry",
    "SessionAssignment",
    "UnblindingKey",
    "Version",
    "image_id",
    "load_key",
    "new_secret",
    "save_key",
    "sheet_code",
]

logger = logging.getLogger(__name__)

#: the two versions of every case shown to readers.
Version = Literal["original", "protected"]
VERSIONS: tuple[Version, Version] = ("original", "protected")

KEY_FORMAT: Final = "medcrypt-study-key/1"
_SECRET_BYTES = 32


def new_secret() -> bytes:
    """A fresh random study secret (32 bytes from the OS CSPRNG)."""
    return secrets.token_bytes(_SECRET_BYTES)


def _mac(secret: bytes, *parts: str) -> bytes:
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).digest()


def _b32(digest: bytes, n_chars: int) -> str:
    return base64.b32encode(digest).decode("ascii").lower()[:n_chars]


def image_id(secret: bytes, case_id: str, version: Version) -> str:
    """The opaque packet ID of one version of one case: 60 bits of a keyed hash.

    Written ``xxxx-xxxx-xxxx`` (base32) so a reader can copy it onto a sheet.
    """
    raw = _b32(_mac(secret, "image", case_id, version), 12)
    return f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"


def sheet_code(secret: bytes, reader: str, session: int) -> str:
    """A short keyed code printed on each answer sheet, tying it to its reader and session."""
    return _b32(_mac(secret, "sheet", reader, str(session)), 8)


class ImageEntry(StrictModel):
    """What one opaque ID stands for."""

    case_id: str
    version: Version
    truth: str


class SessionAssignment(StrictModel):
    """One reader's packet for one session: the images in the order they are shown."""

    reader: str
    session: int = Field(ge=1, le=2)
    sheet_code: str
    image_ids: tuple[str, ...]


class UnblindingKey(StrictModel):
    """The coordinator's secret file. Never put it (or anything derived from the secret but
    the IDs and sheet codes) into a packet."""

    format: Literal["medcrypt-study-key/1"] = "medcrypt-study-key/1"
    config: StudyConfig
    secret_hex: str = Field(min_length=2 * _SECRET_BYTES, max_length=2 * _SECRET_BYTES)
    created_on: dt.date
    session_dates: dict[int, dt.date]
    images: dict[str, ImageEntry]
    assignments: tuple[SessionAssignment, ...]

    @property
    def secret(self) -> bytes:
        return bytes.fromhex(self.secret_hex)

    def assignment(self, reader: str, session: int) -> SessionAssignment:
        for a in self.assignments:
            if a.reader == reader and a.session == session:
                return a
        raise StudyError(f"the key has no packet for reader {reader!r} session {session}")

    def by_sheet_code(self) -> dict[str, SessionAssignment]:
        return {a.sheet_code: a for a in self.assignments}

    def cases(self) -> dict[str, str]:
        """case_id -> ground-truth class, sorted by case_id."""
        out = {e.case_id: e.truth for e in self.images.values()}
        return dict(sorted(out.items()))


def save_key(key: UnblindingKey, path: Path) -> None:
    """Write the key as JSON, creating the file with mode 0o600 (refuses to overwrite).

    The parent folder is created with mode 0o700 when it does not exist.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    payload = key.model_dump_json(indent=2).encode("utf-8")
    try:
        write_private(path, payload)
    except FileExistsError as exc:
        raise StudyError(
            "an unblinding key already exists here; refusing to overwrite it (a new key "
            "would orphan every packet made with the old one)",
            uri=str(path),
        ) from exc
    except OSError as exc:
        raise StudyError(f"cannot write the unblinding key: {exc}", uri=str(path)) from exc
    logger.info("wrote the unblinding key to %s (mode 0600)", path)


def load_key(path: Path) -> UnblindingKey:
    """Read and validate an unblinding key; warns when others can read the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError as exc:
        raise StudyError("unblinding key not found", uri=str(path)) from exc
    except OSError as exc:
        raise StudyError(f"cannot read the unblinding key: {exc}", uri=str(path)) from exc
    if mode & 0o077:
        logger.warning(
            "unblinding key %s is readable by others (mode %s); expected 0600", path, oct(mode)
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudyError(f"unblinding key is not JSON: {exc}", uri=str(path)) from exc
    try:
        return UnblindingKey.model_validate(data)
    except ValidationError as exc:
        # Name the bad fields but never echo their values: one of them is the secret. The
        # error is raised outside this block so the ValidationError (which holds the input)
        # is not kept as its context either.
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + f" ({e['msg']})" for e in exc.errors()
        )
    raise StudyError(f"unblinding key is invalid: {problems}", uri=str(path))
