"""translate_error maps botocore's exceptions onto the StorageError tree (no network)."""

from __future__ import annotations

import botocore.exceptions as bce
import pytest

from medcrypt.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
    TransientStorageError,
)
from medcrypt.storage import translate_error

URI = "s3://bucket/prefix/key"


def _client_error(code: str, status: int, retries: int = 0) -> bce.ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
    }
    return bce.ClientError(response, "GetObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFoundError),
        ("404", 404, ObjectNotFoundError),
        ("NoSuchBucket", 404, ObjectNotFoundError),
        ("PreconditionFailed", 412, ObjectExistsError),
        ("AccessDenied", 403, StorageAccessError),
        ("InvalidAccessKeyId", 403, StorageAccessError),
        ("SlowDown", 503, TransientStorageError),
        ("InternalError", 500, TransientStorageError),
        ("ConditionalRequestConflict", 409, TransientStorageError),
        ("InvalidArgument", 400, StorageError),
    ],
)
def test_client_errors(code: str, status: int, expected: type[StorageError]) -> None:
    err = translate_error(_client_error(code, status, retries=2), operation="get", uri=URI)
    assert type(err) is expected
    assert (err.operation, err.uri) == ("get", URI)
    assert code in str(err) and URI in str(err)


def test_transient_message_counts_attempts() -> None:
    err = translate_error(_client_error("SlowDown", 503, retries=7), operation="put", uri=URI)
    assert "gave up after 8 attempt(s)" in str(err)


def test_credential_and_network_errors() -> None:
    assert isinstance(
        translate_error(bce.NoCredentialsError(), operation="list", uri=URI), StorageAccessError
    )
    net = bce.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(translate_error(net, operation="get", uri=URI), TransientStorageError)
    other = translate_error(RuntimeError("boom"), operation="get", uri=URI)
    assert type(other) is StorageError and "RuntimeError: boom" in str(other)
