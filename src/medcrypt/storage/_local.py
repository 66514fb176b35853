"""The local-filesystem store: the embedded default (no S3 needed on a laptop).

Writes are atomic: data goes to a hidden temporary file in the target folder and is moved into
place with ``os.replace`` (overwrite) or ``os.link`` (write-if-absent: the link fails if the
name exists, so two concurrent writers cannot both win and nobody ever sees a partial file).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medcrypt.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
)
from medcrypt.storage._base import ObjectInfo, check_key, join_uri
from medcrypt.storage._uri import local_path

__all__ = ["LocalStore"]

logger = logging.getLogger(__name__)

#: Hidden temporary files of in-flight writes start with this; listings skip them.
TMP_PREFIX = ".medcrypt-tmp-"
_NO_HARDLINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class LocalStore:
    """An :class:`~medcrypt.storage.ObjectStore` over a local folder.

    Args:
        root: folder path or ``file://`` URI; created on the first write if absent.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = local_path(root)
        self.uri = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, key: str, operation: str) -> Path:
        check_key(key, operation=operation, root=self.uri)
        return self.root.joinpath(*key.split("/"))

    def _uri(self, key: str) -> str:
        return join_uri(self.uri, key)

    def _translate(self, exc: OSError, *, operation: str, key: str) -> StorageError:
        uri = self._uri(key)
        if operation == "put" and isinstance(
            exc, NotADirectoryError | IsADirectoryError | FileExistsError
        ):
            return StorageError(
                f"put: cannot create a file here: a folder or file is in the way ({exc.strerror})",
                operation=operation,
                uri=uri,
            )
        if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return ObjectNotFoundError(
                f"{operation}: expected a file at this path, found none ({exc.strerror})",
                operation=operation,
                uri=uri,
            )
        if isinstance(exc, PermissionError):
            return StorageAccessError(
                f"{operation}: permission denied ({exc.strerror})", operation=operation, uri=uri
            )
        return StorageError(f"{operation} failed: {exc}", operation=operation, uri=uri)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, etag=None, mtime=st.st_mtime)

    # -- protocol ------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Files whose key starts with ``prefix``, recursively, in sorted key order.

        Only one folder's entries are held at a time; temporary files of in-flight writes
        are skipped.
        """
        check_key(prefix, operation="list", root=self.uri, allow_empty=True)
        head = prefix.rpartition("/")[0]
        start = self.root.joinpath(*head.split("/")) if head else self.root
        return self._walk(start, f"{head}/" if head else "", prefix)

    def _walk(self, directory: Path, dir_key: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as it:
                entries = []
                for entry in it:
                    if entry.name.startswith(TMP_PREFIX):
                        continue
                    is_dir = entry.is_dir()
                    entries.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._translate(exc, operation="list", key=dir_key) from exc
        # Sorting names with a trailing "/" on folders gives the global key order S3 uses.
        entries.sort(key=lambda t: t[0])
        for name, entry, is_dir in entries:
            key = dir_key + name
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                except OSError as exc:
                    raise self._translate(exc, operation="list", key=key) from exc
                yield self._info(key, st)

    def get(self, key: str) -> bytes:
        path = self._path(key, "get")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._translate(exc, operation="get", key=key) from exc

    def get_to_file(self, key: str, path: Path) -> None:
        src = self._path(key, "get")
        path = Path(path)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise self._translate(exc, operation="get", key=key) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        target = self._path(key, "put")
        tmp: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            if if_absent:
                self._link_if_absent(tmp, target, key, data)
            else:
                os.replace(tmp, target)
                tmp = None
            st = target.stat()
        except StorageError:
            raise
        except OSError as exc:
            raise self._translate(exc, operation="put", key=key) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        logger.debug("put %s (%d bytes, if_absent=%s)", self._uri(key), len(data), if_absent)
        return self._info(key, st)

    def _link_if_absent(self, tmp: str, target: Path, key: str, data: bytes) -> None:
        try:
            os.link(tmp, target)
            return
        except FileExistsError as exc:
            raise self._exists(key) from exc
        except OSError as exc:
            if exc.errno not in _NO_HARDLINK:
                raise
            logger.debug("no hard links at %s (%s); using O_EXCL", target.parent, exc.strerror)
        # Fallback for filesystems without hard links: exclusive create, then write. A reader
        # racing the writer may see a short file here; the hard-link path above cannot.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise self._exists(key) from exc
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _exists(self, key: str) -> ObjectExistsError:
        return ObjectExistsError(
            "put if absent: expected no object at this key, found one already there",
            operation="put",
            uri=self._uri(key),
        )

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key, "stat")
        try:
            st = path.stat()
        except OSError as exc:
            raise self._translate(exc, operation="stat", key=key) from exc
        if not path.is_file():
            raise ObjectNotFoundError(
                "stat: expected a file at this path, found a folder",
                operation="stat",
                uri=self._uri(key),
            )
        return self._info(key, st)

    def exists(self, key: str) -> bool:
        return self._path(key, "exists").is_file()

    def delete(self, key: str) -> None:
        path = self._path(key, "delete")
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._translate(exc, operation="delete", key=key) from exc
