"""The storage protocol shared by the S3 and local-filesystem stores.

Keys are ``/``-separated paths relative to the store's root (``uri``). They never start with
``/``, never contain empty, ``.`` or ``..`` segments, and never contain NUL or a backslash, so a
key means the same object on S3 and on disk and cannot escape the root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field

from medcrypt.config import StrictModel
from medcrypt.errors import StorageError

__all__ = ["ObjectInfo", "ObjectStore", "check_key", "join_uri"]


class ObjectInfo(StrictModel):
    """What a store knows about one object without reading it.

    Attributes:
        key: the key relative to the store root.
        size: length in bytes.
        etag: the S3 ETag without quotes (``None`` for local files).
        mtime: last modification, seconds since the epoch.
    """

    key: str
    size: int = Field(ge=0)
    etag: str | None = None
    mtime: float

    @property
    def version(self) -> str:
        """A string that changes whenever the object's content is replaced.

        The ETag where the store has one, else ``"<size>:<mtime in ns>"``.
        """
        if self.etag:
            return self.etag
        return f"{self.size}:{round(self.mtime * 1e9)}"


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of byte objects under one root ``uri`` (S3 prefix or local folder)."""

    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a string prefix, not a folder),
        recursively, in sorted key order, streamed page by page."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object. Raises ObjectNotFoundError if absent."""
        ...

    def get_to_file(self, key: str, path: Path) -> None:
        """Stream the object into ``path`` (replaced atomically). ObjectNotFoundError if absent."""
        ...

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        """Write ``data`` at ``key`` atomically. With ``if_absent``, raise ObjectExistsError
        instead of replacing an existing object (also against a concurrent writer)."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag and mtime of ``key``. Raises ObjectNotFoundError if absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        ...


def check_key(key: str, *, operation: str, root: str, allow_empty: bool = False) -> str:
    """Return ``key`` if it is a valid relative object key, else raise StorageError.

    ``allow_empty`` accepts ``""`` (used for list prefixes). A trailing ``/`` is allowed only
    when ``allow_empty`` is set (prefixes may name a folder).
    """
    if not isinstance(key, str):
        raise StorageError(
            f"expected the key as a string, got {type(key).__name__}", operation=operation, uri=root
        )
    if key == "":
        if allow_empty:
            return key
        raise StorageError("expected a non-empty object key, got ''", operation=operation, uri=root)
    problem = None
    body = key[:-1] if (allow_empty and key.endswith("/")) else key
    if key.startswith("/"):
        problem = "it starts with '/'"
    elif "\x00" in key or "\\" in key:
        problem = "it contains NUL or a backslash"
    elif any(part in ("", ".", "..") for part in body.split("/")):
        problem = "it has an empty, '.' or '..' path segment"
    if problem is not None:
        raise StorageError(
            f"expected a relative object key like 'case/file.nii.gz', got {key!r}: {problem}",
            operation=operation,
            uri=join_uri(root, key) if not key.startswith("/") else root,
        )
    return key


def join_uri(root: str, key: str) -> str:
    """``root`` + ``/`` + ``key`` without doubling the separator (for messages and records)."""
    if not key:
        return root
    return f"{root.rstrip('/')}/{key}"
