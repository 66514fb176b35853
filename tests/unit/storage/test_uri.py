"""URI parsing: s3:// URIs, local paths, split_uri."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcrypt.errors import ConfigError
from medcrypt.storage import S3Store, local_path, open_store, parse_s3_uri, split_uri


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket-1/archive/2024", "my.bucket-1", "archive/2024"),
        ("s3://abc/archive/", "abc", "archive"),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, prefix: str) -> None:
    parsed = parse_s3_uri(uri)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)
    assert parse_s3_uri(parsed.uri) == parsed


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://ab/x", "bucket name"),
        ("s3://My_Bucket/x", "bucket name"),
        ("s3://-bucket/x", "bucket name"),
        ("s3://192.168.1.1/x", "bucket name"),
        ("s3://bucket//x", "segments"),
        ("s3://bucket/a/../b", "segments"),
        ("S3://bucket/x", "lowercase"),
        ("s3a://bucket/x", "'s3://'"),
        (" s3://bucket/x", "whitespace"),
    ],
)
def test_bad_s3_uris_give_config_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_s3_uri(uri, field="source")
    assert err.value.field == "source"
    assert "source" in str(err.value)


def test_open_store_rejects_bad_uris_and_schemes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket"):
        open_store("s3://x/y")
    with pytest.raises(ConfigError, match="scheme 'gs'"):
        open_store("gs://bucket/x")
    with pytest.raises(ConfigError, match="empty"):
        open_store("")
    with pytest.raises(ConfigError, match="endpoint_url"):
        open_store("s3://bucket/x", endpoint_url="localhost:9000")
    s = open_store("s3://bucket/x/", endpoint_url="http://127.0.0.1:9")
    assert isinstance(s, S3Store) and s.uri == "s3://bucket/x"
    assert "testing" not in repr(s)


def test_split_uri() -> None:
    assert split_uri("s3://bucket/a/b/c.nii.gz") == ("s3://bucket", "a/b/c.nii.gz")
    root, key = split_uri("/data/archive/case1.nii.gz")
    assert (root, key) == ("/data/archive", "case1.nii.gz")
    for bad in ("s3://bucket", "s3://bucket/", "s3://bucket/folder/", "/data/folder/"):
        with pytest.raises(ConfigError, match="expected"):
            split_uri(bad)


def test_local_path_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert local_path("sub/dir") == tmp_path.resolve() / "sub" / "dir"
    assert local_path(f"file://{tmp_path}/x") == tmp_path.resolve() / "x"
    with pytest.raises(ConfigError, match="file:///"):
        local_path("file://relative/x")
