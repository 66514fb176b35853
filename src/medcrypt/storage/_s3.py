"""The S3 store on boto3: botocore retries, a sized connection pool, multipart transfers.

Credentials come only from boto3's standard chain (environment, shared config/credentials
files, SSO, container/instance roles); this module never reads, stores or logs them. The
endpoint is configurable, so MinIO, Ceph RGW and other S3-compatible stores work too.

Every boto3/botocore/s3transfer error is translated here into a
:class:`~medcrypt.errors.StorageError` subclass naming the operation and the ``s3://`` URI.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import boto3
import botocore.exceptions as bce
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.exceptions import RetriesExceededError

from medcrypt.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
    TransientStorageError,
)
from medcrypt.storage._base import ObjectInfo, check_key, join_uri
from medcrypt.storage._uri import parse_s3_uri

__all__ = ["RetryMode", "S3Store"]

logger = logging.getLogger(__name__)

RetryMode = Literal["standard", "adaptive", "legacy"]
MiB = 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_ACCESS = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
    "403",
    "401",
}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",
    "OperationAborted",
}
_NETWORK = (
    bce.HTTPClientError,  # connection reset / closed, read timeout, proxy errors
    bce.ConnectionError,  # endpoint unreachable, connect timeout
    bce.ResponseStreamingError,
    bce.IncompleteReadError,
    RetriesExceededError,  # s3transfer gave up re-reading a download
)
_BODY_ERRORS = (
    bce.ResponseStreamingError,
    bce.IncompleteReadError,
    bce.ReadTimeoutError,
    bce.ConnectionClosedError,
)


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


class S3Store:
    """An :class:`~medcrypt.storage.ObjectStore` over ``s3://bucket/prefix``.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix``; keys are relative to the prefix.
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, a test server); ``None`` = AWS.
            With a custom endpoint, path-style addressing is used and checksums are only sent
            where the API requires them (what most S3-compatible servers expect).
        max_pool: HTTP connection pool size; match it to the threads sharing this store.
        retry_mode / max_attempts: botocore's retry mode and total attempts per request
            (throttling, 5xx and connection errors are retried with backoff).
        page_size: keys per ``ListObjectsV2`` page (at most 1000).
        multipart_threshold / multipart_chunksize: objects at least this large go up and down
            in parts of this size (S3's minimum part is 5 MiB).
        connect_timeout / read_timeout: seconds, per attempt.
        region_name: AWS region; ``None`` = from the standard AWS config chain.

    The store is picklable (Ray ships it to workers); each process builds its own client
    lazily and shares it between threads.
    """

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

    # -- protocol ------------------------------------------------------------------------------

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

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        full = self._full(key, "put")
        size = len(data)
        try:
            if size < self.multipart_threshold and if_absent:
                info = self._put_small_if_absent(key, full, data)
            elif size < self.multipart_threshold:
                response = self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
                info = ObjectInfo(
                    key=key, size=size, etag=_etag(response.get("ETag")), mtime=_date(response)
                )
            elif if_absent:
                info = self._put_multipart_if_absent(key, full, data)
            else:
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, full, Config=self.transfer_config
                )
                info = self.stat(key)
        except StorageError:
            raise
        except Exception as exc:
            raise self._translate(exc, operation="put", key=key) from exc
        logger.debug("put %s (%d bytes, if_absent=%s)", self._uri(key), size, if_absent)
        return info

    def _put_small_if_absent(self, key: str, full: str, data: bytes) -> ObjectInfo:
        """``PutObject`` with ``If-None-Match: *``, safe under botocore's retries.

        If a first attempt reached S3 but its answer was lost (reset, timeout), botocore's
        retry meets our own object and gets 412. That case is told apart from a real second
        writer by comparing the stored object's ETag (the MD5 of a single-part upload without
        KMS) with ours: equal means the object is the one this call wrote.
        """
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*"
            )
        except bce.ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {}) or {}
            status = int(meta.get("HTTPStatusCode", 0) or 0)
            if status != 412 or not meta.get("RetryAttempts"):
                raise
            ours = hashlib.md5(data, usedforsecurity=False).hexdigest()
            existing = self.stat(key)
            if existing.etag != ours:
                raise
            logger.debug("put %s: a retried conditional write met its own object", full)
            return existing
        return ObjectInfo(
            key=key, size=len(data), etag=_etag(response.get("ETag")), mtime=_date(response)
        )

    def _put_multipart_if_absent(self, key: str, full: str, data: bytes) -> ObjectInfo:
        """Multipart upload whose completion carries ``If-None-Match: *``.

        boto3's transfer manager does not pass conditional headers to
        ``CompleteMultipartUpload``, so the parts are sent here; the object appears only if the
        key is still absent when the upload completes, and the upload is aborted otherwise.
        """
        client = self.client
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        digests = hashlib.md5(usedforsecurity=False)
        try:
            parts = []
            view = memoryview(data)
            for number, start in enumerate(range(0, len(data), self.multipart_chunksize), 1):
                chunk = view[start : start + self.multipart_chunksize]
                part = client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(chunk),
                )
                digests.update(hashlib.md5(chunk, usedforsecurity=False).digest())
                parts.append({"ETag": part["ETag"], "PartNumber": number})
            try:
                response = client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except bce.ClientError as exc:
                # as in _put_small_if_absent: a retry that meets our own completed upload
                meta = exc.response.get("ResponseMetadata", {}) or {}
                if int(meta.get("HTTPStatusCode", 0) or 0) == 412 and meta.get("RetryAttempts"):
                    existing = self.stat(key)
                    if existing.etag == f"{digests.hexdigest()}-{len(parts)}":
                        return existing
                raise
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise
        return ObjectInfo(
            key=key, size=len(data), etag=_etag(response.get("ETag")), mtime=_date(response)
        )

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

    def delete(self, key: str) -> None:
        full = self._full(key, "delete")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._translate(exc, operation="delete", key=key) from exc


def translate_error(exc: BaseException, *, operation: str, uri: str) -> StorageError:
    """Map a boto3 / botocore / s3transfer exception onto the StorageError tree."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, bce.ClientError):
        response: dict[str, Any] = dict(exc.response)
        error = response.get("Error", {}) or {}
        meta = response.get("ResponseMetadata", {}) or {}
        code = str(error.get("Code", "") or "")
        status = int(meta.get("HTTPStatusCode", 0) or 0)
        attempts = int(meta.get("RetryAttempts", 0) or 0) + 1
        said = f"S3 answered {status} {code}".rstrip()
        if error.get("Message"):
            said += f" ({error['Message']})"
        if code == "NoSuchBucket":
            return ObjectNotFoundError(
                f"{operation}: expected an existing bucket, {said}", operation=operation, uri=uri
            )
        if code in _NOT_FOUND or status == 404:
            return ObjectNotFoundError(
                f"{operation}: expected an object at this key, {said}", operation=operation, uri=uri
            )
        if code == "PreconditionFailed" or status == 412:
            return ObjectExistsError(
                f"{operation} if absent: expected no object at this key, but one exists ({said})",
                operation=operation,
                uri=uri,
            )
        if code in _ACCESS or status in (401, 403):
            return StorageAccessError(
                f"{operation}: the credentials were refused, {said}", operation=operation, uri=uri
            )
        if code in _TRANSIENT or status >= 500 or status == 429:
            return TransientStorageError(
                f"{operation}: gave up after {attempts} attempt(s), last {said}",
                operation=operation,
                uri=uri,
            )
        return StorageError(f"{operation} failed: {said}", operation=operation, uri=uri)
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return StorageAccessError(
            f"{operation}: no usable AWS credentials found in the standard chain "
            "(environment, ~/.aws files, SSO or an instance/container role)",
            operation=operation,
            uri=uri,
        )
    if isinstance(exc, bce.CredentialRetrievalError | bce.TokenRetrievalError):
        return StorageAccessError(
            f"{operation}: could not fetch AWS credentials ({type(exc).__name__})",
            operation=operation,
            uri=uri,
        )
    if isinstance(exc, _NETWORK):
        return TransientStorageError(
            f"{operation}: the connection kept failing after the retry budget "
            f"({type(exc).__name__}: {exc})",
            operation=operation,
            uri=uri,
        )
    if isinstance(exc, bce.ParamValidationError):
        return StorageError(
            f"{operation}: invalid request parameters: {exc}", operation=operation, uri=uri
        )
    return StorageError(
        f"{operation} failed: {type(exc).__name__}: {exc}", operation=operation, uri=uri
    )


def _etag(value: Any) -> str | None:
    if not value:
        return None
    return str(value).strip('"')


def _date(response: dict[str, Any]) -> float:
    """Server time of a write response (the object's Last-Modified, to the second)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    text = headers.get("last-modified") or headers.get("date")
    if text:
        with contextlib.suppress(TypeError, ValueError):
            return parsedate_to_datetime(text).timestamp()
    return time.time()
