"""boto3 / botocore / s3transfer errors, told as medcrypt's StorageError tree.

:func:`translate_error` maps every exception the S3 store meets onto a
:class:`~medcrypt.errors.StorageError` subclass naming the operation and the ``s3://`` URI:
missing object or bucket, refused credentials, exhausted retries (transient), or other.
"""

from __future__ import annotations

import contextlib
import time
from email.utils import parsedate_to_datetime
from typing import Any

import botocore.exceptions as bce
from s3transfer.exceptions import RetriesExceededError

from medcrypt.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
    TransientStorageError,
)

__all__ = ["translate_error"]

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
