"""Opening a store from a URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcrypt.storage._base import ObjectStore
from medcrypt.storage._local import LocalStore
from medcrypt.storage._uri import is_s3_uri

__all__ = ["open_store"]


def open_store(
    uri: str | Path, *, endpoint_url: str | None = None, max_pool: int = 32, **s3_options: Any
) -> ObjectStore:
    """The store rooted at ``uri``: :class:`S3Store` for ``s3://bucket/prefix``, else
    :class:`LocalStore` for a path or ``file://`` URI.

    ``endpoint_url`` and ``max_pool`` (and the further keyword options of :class:`S3Store`:
    ``retry_mode``, ``max_attempts``, ``page_size``, ``multipart_threshold``, ...) apply to S3
    only. Raises ConfigError for a malformed URI or an unsupported scheme.
    """
    text = str(uri)
    if is_s3_uri(text):
        # boto3 is imported only when an S3 store is opened: the CLI's start-up and the
        # reader study's server, which open local stores, never pay for it
        from medcrypt.storage._s3 import S3Store

        return S3Store(text, endpoint_url=endpoint_url, max_pool=max_pool, **s3_options)
    return LocalStore(text)
