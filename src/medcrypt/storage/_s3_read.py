"""Reads of the S3 store: listing (paged ``ListObjectsV2``) and downloads (``get``,
``get_to_file``), a GET whose body is cut off repeated within the store's retry budget."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcrypt.errors import StorageError
from medcrypt.storage._base import ObjectInfo, check_key
from medcrypt.storage._s3_client import _S3Client
from medcrypt.storage._s3_errors import _BODY_ERRORS, _etag

__all__: list[str] = []

logger = logging.getLogger(__name__)


class _S3Reads(_S3Client):
    """``list``, ``get`` and ``get_to_file`` of :class:`~medcrypt.storage.S3Store`."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix``, sorted, one ``ListObjectsV2`` page in memory at a time."""
        check_key(prefix, operation="list", root=self.uri, allow_empty=True)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        return self._list_pages(prefix, full_prefix)

    def _list_pages(self, prefix: str, full_prefix: str) -> Iterator[ObjectInfo]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": full_prefix,
                "MaxKeys": self.page_size,
            }
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise self._translate(exc, operation="list", key=prefix) from exc
            for obj in page.get("Contents", ()):
                full = obj["Key"]
                if full.endswith("/"):  # zero-byte "folder" marker made by consoles
                    continue
                yield ObjectInfo(
                    key=full[cut:],
                    size=int(obj["Size"]),
                    etag=_etag(obj.get("ETag")),
                    mtime=obj["LastModified"].timestamp(),
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(
                    "list: S3 said the listing is truncated but gave no continuation token",
                    operation="list",
                    uri=self._uri(prefix),
                )

    def get(self, key: str) -> bytes:
        full = self._full(key, "get")
        # botocore retries a request until its headers arrive; a body cut off afterwards is
        # not retried by botocore, so the whole GET is repeated here (bounded by max_attempts).
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                raise self._translate(exc, operation="get", key=key) from exc
            try:
                return bytes(response["Body"].read())
            except _BODY_ERRORS as exc:
                if attempt == self.max_attempts:
                    raise self._translate(exc, operation="get", key=key) from exc
                logger.debug("get %s: body read failed (%s), retrying", self._uri(key), exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_to_file(self, key: str, path: Path) -> None:
        full = self._full(key, "get")
        path = Path(path)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".medcrypt-tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                self.client.download_fileobj(self.bucket, full, f, Config=self.transfer_config)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise StorageError(
                f"get: cannot write the download to {path}: {exc}",
                operation="get",
                uri=self._uri(key),
            ) from exc
        except Exception as exc:
            raise self._translate(exc, operation="get", key=key) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
