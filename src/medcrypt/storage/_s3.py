"""The S3 store on boto3: botocore retries, a sized connection pool, multipart transfers.

Credentials come only from boto3's standard chain (environment, shared config/credentials
files, SSO, container/instance roles); this module never reads, stores or logs them. The
endpoint is configurable, so MinIO, Ceph RGW and other S3-compatible stores work too.

Every boto3/botocore/s3transfer error is translated here into a
:class:`~medcrypt.errors.StorageError` subclass naming the operation and the ``s3://`` URI.

The store is one class in four modules: settings and client (``_s3_client``), reads and
listing (``_s3_read``), writes (``_s3_write``), error translation (``_s3_errors``).
"""

from __future__ import annotations

from medcrypt.storage._s3_client import MiB, RetryMode
from medcrypt.storage._s3_errors import translate_error
from medcrypt.storage._s3_read import _S3Reads
from medcrypt.storage._s3_write import _S3Writes

__all__ = ["MiB", "RetryMode", "S3Store", "translate_error"]


class S3Store(_S3Reads, _S3Writes):
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
