"""Writes of the S3 store: ``put`` (single-part or multipart, plain or put-if-absent with
``If-None-Match: *``, safe under botocore's retries) and ``delete``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging

import botocore.exceptions as bce

from medcrypt.errors import StorageError
from medcrypt.storage._base import ObjectInfo
from medcrypt.storage._s3_client import _S3Client
from medcrypt.storage._s3_errors import _date, _etag

__all__: list[str] = []

logger = logging.getLogger(__name__)


class _S3Writes(_S3Client):
    """``put`` and ``delete`` of :class:`~medcrypt.storage.S3Store`."""

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

    def delete(self, key: str) -> None:
        full = self._full(key, "delete")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._translate(exc, operation="delete", key=key) from exc
