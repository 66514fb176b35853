"""Parsing of store URIs: ``s3://bucket/prefix``, ``file:///path`` or a plain path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medcrypt.errors import ConfigError

__all__ = ["S3Uri", "is_s3_uri", "local_path", "parse_s3_uri", "split_uri"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class S3Uri:
    """A parsed ``s3://bucket/prefix``; ``prefix`` has no leading or trailing ``/``."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        """The canonical text form (no trailing slash)."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def is_s3_uri(uri: str) -> bool:
    """Whether ``uri`` uses the ``s3://`` scheme (any capitalisation)."""
    return uri[:5].lower() == "s3://"


def parse_s3_uri(uri: str, *, field: str | None = None) -> S3Uri:
    """Parse ``s3://bucket[/prefix]``; raise ConfigError (naming ``field``) when it is malformed.

    The bucket must follow the S3 naming rules (3-63 characters of lowercase letters, digits,
    dots and hyphens, starting and ending with a letter or digit, not an IP address). The
    prefix may end with ``/`` but must not contain empty, ``.`` or ``..`` segments.
    """
    where = f"{field}: " if field else ""
    if not isinstance(uri, str):
        raise ConfigError(
            f"{where}expected an s3:// URI string, got {type(uri).__name__}", field=field
        )
    if uri != uri.strip() or any(ord(c) < 32 for c in uri):
        raise ConfigError(
            f"{where}expected an s3:// URI without surrounding whitespace or control "
            f"characters, got {uri!r}",
            field=field,
            uri=uri,
        )
    if not uri.startswith("s3://"):
        raise ConfigError(
            f"{where}expected a URI starting with 's3://' (lowercase), got {uri!r}",
            field=field,
            uri=uri,
        )
    rest = uri[5:]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(
            f"{where}expected 's3://<bucket>/<prefix>', got {uri!r} (no bucket name)",
            field=field,
            uri=uri,
        )
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise ConfigError(
            f"{where}expected an S3 bucket name of 3-63 lowercase letters, digits, '.' or '-' "
            f"(starting and ending with a letter or digit), got {bucket!r} in {uri!r}",
            field=field,
            uri=uri,
        )
    prefix = prefix[:-1] if prefix.endswith("/") else prefix
    if prefix:
        bad = [p for p in prefix.split("/") if p in ("", ".", "..")]
        if bad or "\\" in prefix:
            raise ConfigError(
                f"{where}expected a key prefix without empty, '.' or '..' segments or "
                f"backslashes, got {prefix!r} in {uri!r}",
                field=field,
                uri=uri,
            )
    return S3Uri(bucket=bucket, prefix=prefix)


def local_path(uri: str | Path, *, field: str | None = None) -> Path:
    """The absolute local path that ``uri`` (a path or ``file://`` URI) names.

    Raises ConfigError for an empty string or a URI with another scheme (``gs://``, ``http://``).
    """
    where = f"{field}: " if field else ""
    text = str(uri)
    if not text.strip():
        raise ConfigError(f"{where}expected a path or URI, got an empty string", field=field)
    if text.startswith("file://"):
        text = text[len("file://") :]
        if not text.startswith("/"):
            raise ConfigError(
                f"{where}expected 'file:///absolute/path', got {uri!r}", field=field, uri=str(uri)
            )
    elif m := _SCHEME.match(text):
        raise ConfigError(
            f"{where}expected an 's3://' URI or a local path, got scheme {m.group(1)!r} in {uri!r}",
            field=field,
            uri=str(uri),
        )
    return Path(text).expanduser().resolve()


def split_uri(uri: str) -> tuple[str, str]:
    """Split a URI naming one object into ``(store root URI, key)``.

    ``s3://bucket/a/b.nii.gz`` -> ``("s3://bucket", "a/b.nii.gz")``: the root is the bucket, so
    every object of a bucket shares one store. A local path ``/data/a/b.nii.gz`` ->
    ``("/data/a", "b.nii.gz")``: the root is the containing folder.

    Raises ConfigError when the URI is malformed or names a bucket / folder, not an object.
    """
    if is_s3_uri(uri):
        parsed = parse_s3_uri(uri)
        if not parsed.prefix or uri.endswith("/"):
            raise ConfigError(
                f"expected a URI naming one object (s3://bucket/key), got {uri!r}", uri=uri
            )
        return f"s3://{parsed.bucket}", parsed.prefix
    if str(uri).endswith("/"):
        raise ConfigError(f"expected a path naming one file, got the folder {uri!r}", uri=uri)
    path = local_path(uri)
    if path.parent == path:
        raise ConfigError(f"expected a path naming one file, got {uri!r}", uri=uri)
    return str(path.parent), path.name
