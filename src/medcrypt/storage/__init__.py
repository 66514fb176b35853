"""medcrypt.storage: one ObjectStore protocol over S3 (boto3) and the local filesystem.

Open a store with :func:`open_store` (``s3://bucket/prefix`` or a path); keys are relative to
that root. Errors are :class:`~medcrypt.errors.StorageError` subclasses naming the operation
and the URI. This package never imports torch or ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.storage._base import ObjectInfo, ObjectStore, check_key, join_uri
    from medcrypt.storage._local import LocalStore
    from medcrypt.storage._open import open_store
    from medcrypt.storage._s3 import RetryMode, S3Store, translate_error
    from medcrypt.storage._uri import S3Uri, is_s3_uri, local_path, parse_s3_uri, split_uri
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "RetryMode",
    "S3Store",
    "S3Uri",
    "check_key",
    "is_s3_uri",
    "join_uri",
    "local_path",
    "open_store",
    "parse_s3_uri",
    "split_uri",
    "translate_error",
]
