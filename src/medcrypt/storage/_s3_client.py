"""The S3 store's settings and boto3 client, shared by its reads and writes.

:class:`_S3Client` validates the settings, builds one boto3 client per process and
settings (cached, thread-safe, never pickled), maps keys under the prefix and stats objects
(a HEAD, which reads and conditional writes both need). ``_s3_read`` and ``_s3_write`` add
the rest of the :class:`~medcrypt.storage.ObjectStore` protocol; ``_s3.S3Store`` joins them.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from medcrypt.errors import ConfigError, ObjectNotFoundError, StorageError
from medcrypt.storage._base import ObjectInfo, check_key, join_uri
from medcrypt.storage._s3_errors import _etag, translate_error
from medcrypt.storage._uri import parse_s3_uri

__all__ = ["MiB", "RetryMode"]

logger = logging.getLogger(__name__)

RetryMode = Literal["standard", "adaptive", "legacy"]
MiB = 1024 * 1024


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


class _S3Client:
    """Settings, client and keys of an S3 store (see :class:`~medcrypt.storage.S3Store`)."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        max_pool: int = 32,
        retry_mode: RetryMode = "standard",
        max_attempts: int = 8,
        page_size: int = 1000,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int = 8 * MiB,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        region_name: str | None = None,
    ) -> None:
        parsed = parse_s3_uri(uri, field="uri")
        for name, value, low in (
            ("max_pool", max_pool, 1),
            ("max_attempts", max_attempts, 1),
            ("page_size", page_size, 1),
            ("multipart_chunksize", multipart_chunksize, 5 * MiB),
            ("multipart_threshold", multipart_threshold, 5 * MiB),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"{name}: expected an integer >= {low}, got {value!r}", field=name
                )
        if page_size > 1000:
            raise ConfigError(
                f"page_size: expected at most 1000, got {page_size}", field="page_size"
            )
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise ConfigError(
                f"retry_mode: expected 'standard', 'adaptive' or 'legacy', got {retry_mode!r}",
                field="retry_mode",
            )
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"endpoint_url: expected an http:// or https:// URL, got {endpoint_url!r}",
                field="endpoint_url",
            )
        self.bucket = parsed.bucket
        self.prefix = parsed.prefix
        self.uri = parsed.uri
        self.endpoint_url = endpoint_url
        self.max_pool = max_pool
        self.retry_mode: RetryMode = retry_mode
        self.max_attempts = max_attempts
        self.page_size = page_size
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.region_name = region_name
        self._client: Any = None

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.uri!r}{where})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    # -- client --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 S3 client of this process (built on first use, thread-safe).

        Clients are cached per process and settings, so the many short-lived copies of a store
        that Ray tasks unpickle share one client and its connection pool.
        """
        if self._client is None:
            settings = (
                os.getpid(),
                self.endpoint_url,
                self.region_name,
                self.max_pool,
                self.retry_mode,
                self.max_attempts,
                self.connect_timeout,
                self.read_timeout,
            )
            with _CLIENTS_LOCK:
                client = _CLIENTS.get(settings)
                if client is None:
                    client = _CLIENTS[settings] = self._make_client()
            self._client = client
        return self._client

    def _make_client(self) -> Any:
        options: dict[str, Any] = {
            # botocore: "total_max_attempts" counts the first try, "max_attempts" only retries
            "retries": {"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            "max_pool_connections": self.max_pool,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "user_agent_extra": "medcrypt",
        }
        if self.endpoint_url is not None:
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        session = boto3.session.Session(region_name=self.region_name)
        logger.debug(
            "S3 client for %s (endpoint %s, pool %d, retries %s x%d)",
            self.uri,
            self.endpoint_url or "AWS",
            self.max_pool,
            self.retry_mode,
            self.max_attempts,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(**options))

    @property
    def transfer_config(self) -> TransferConfig:
        """Multipart settings for ``upload_fileobj`` / ``download_fileobj``."""
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=max(1, min(10, self.max_pool)),
            use_threads=True,
        )

    # -- keys and errors -----------------------------------------------------------------------

    def _full(self, key: str, operation: str) -> str:
        check_key(key, operation=operation, root=self.uri)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _uri(self, key: str) -> str:
        return join_uri(self.uri, key)

    def _translate(self, exc: Exception, *, operation: str, key: str) -> StorageError:
        return translate_error(exc, operation=operation, uri=self._uri(key))

    # -- metadata ------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key, "stat")
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._translate(exc, operation="stat", key=key) from exc
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=_etag(head.get("ETag")),
            mtime=head["LastModified"].timestamp(),
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True
