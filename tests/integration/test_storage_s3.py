"""S3Store against a real S3 endpoint over HTTP (moto server), with and without injected faults."""

from __future__ import annotations

import logging
import pickle
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from _flaky_proxy import FaultPlan, FlakyProxy

from medcrypt.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
    TransientStorageError,
)
from medcrypt.storage import ObjectStore, S3Store, open_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MiB = 1024 * 1024


def _store(bucket: str, endpoint: str, prefix: str = "archive", **kw: Any) -> S3Store:
    store = open_store(f"s3://{bucket}/{prefix}", endpoint_url=endpoint, **kw)
    assert isinstance(store, S3Store)
    return store


def test_round_trip_put_get_stat_exists_delete(moto_server: str, s3_bucket: str, s3_client: Any):
    store = _store(s3_bucket, moto_server)
    assert isinstance(store, ObjectStore)
    info = store.put("case1/record.json", b'{"a": 1}')
    assert (info.key, info.size) == ("case1/record.json", 8)
    assert info.etag and info.version == info.etag
    # the object really sits under the store prefix in the bucket
    raw = s3_client.get_object(Bucket=s3_bucket, Key="archive/case1/record.json")
    assert raw["Body"].read() == b'{"a": 1}'
    assert store.get("case1/record.json") == b'{"a": 1}'
    stat = store.stat("case1/record.json")
    assert (stat.size, stat.etag) == (8, info.etag)
    assert stat.mtime == pytest.approx(info.mtime, abs=2)
    assert store.exists("case1/record.json")
    store.put("case1/record.json", b"replaced")
    assert store.get("case1/record.json") == b"replaced"
    assert store.stat("case1/record.json").etag != info.etag
    store.delete("case1/record.json")
    assert not store.exists("case1/record.json")
    store.delete("case1/record.json")  # absent: not an error


def test_get_to_file_streams_into_place(moto_server: str, s3_bucket: str, tmp_path: Path):
    store = _store(s3_bucket, moto_server)
    store.put("a/b.bin", b"x" * 1000)
    target = tmp_path / "sub" / "b.bin"
    store.get_to_file("a/b.bin", target)
    assert target.read_bytes() == b"x" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]  # no temp file left


def test_listing_is_paginated_sorted_and_scoped_to_the_prefix(
    s3_bucket: str, s3_client: Any, flaky_proxy: FlakyProxy
) -> None:
    # the proxy injects nothing here; it only counts the ListObjectsV2 requests
    keys = ["c/1", "a/2", "a/10", "b/x.nii.gz", "a-z/3", "a/sub/4", "a/sub/5"]
    for k in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=f"archive/{k}", Body=k.encode())
    s3_client.put_object(Bucket=s3_bucket, Key="archive-old/a/1", Body=b"sibling")
    s3_client.put_object(Bucket=s3_bucket, Key="archive/empty-folder/", Body=b"")
    store = _store(s3_bucket, flaky_proxy.endpoint_url, page_size=2)
    flaky_proxy.set_plan(FaultPlan(methods=["GET"], path_contains="list-type=2"))

    it = store.list()
    first = next(it)
    assert flaky_proxy.eligible == 1  # streaming: only the first page has been fetched
    listed = [first, *it]
    assert [o.key for o in listed] == sorted(keys)
    assert flaky_proxy.eligible == 4  # 7 keys + 1 folder marker at 2 per page
    assert {o.key: o.size for o in listed}["b/x.nii.gz"] == len(b"b/x.nii.gz")
    assert [o.key for o in store.list("a/")] == ["a/10", "a/2", "a/sub/4", "a/sub/5"]
    assert [o.key for o in store.list("a")] == ["a-z/3", "a/10", "a/2", "a/sub/4", "a/sub/5"]
    assert list(store.list("nothing/")) == []
    assert flaky_proxy.total_injected == 0


def test_conditional_put_refuses_the_second_writer(moto_server: str, s3_bucket: str) -> None:
    store = _store(s3_bucket, moto_server)
    store.put("case1/record.json", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError) as err:
        store.put("case1/record.json", b"second", if_absent=True)
    assert err.value.uri == f"s3://{s3_bucket}/archive/case1/record.json"
    assert err.value.operation == "put"
    assert store.get("case1/record.json") == b"first"


def test_concurrent_conditional_writers_exactly_one_wins(moto_server: str, s3_bucket: str) -> None:
    store = _store(s3_bucket, moto_server, max_pool=8)
    winners: list[int] = []
    losers: list[int] = []
    barrier = threading.Barrier(6)

    def write(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            store.put("lock.json", f"writer {i}".encode(), if_absent=True)
            winners.append(i)
        except ObjectExistsError:
            losers.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1 and len(losers) == 5
    assert store.get("lock.json") == f"writer {winners[0]}".encode()


def test_multipart_upload_and_download_of_a_large_object(
    moto_server: str, s3_bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    data = random.Random(7).randbytes(9 * MiB + 123)
    store = _store(s3_bucket, moto_server, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    info = store.put("big/volume.nii.gz", data)
    assert info.size == len(data)
    assert info.etag is not None and info.etag.endswith("-2")  # S3 multipart ETag: 2 parts
    assert store.get("big/volume.nii.gz") == data
    target = tmp_path / "volume.nii.gz"
    store.get_to_file("big/volume.nii.gz", target)
    assert target.read_bytes() == data

    # conditional multipart: first wins, second is refused and its upload aborted
    store.put("big/cond.bin", data, if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("big/cond.bin", data[::-1], if_absent=True)
    assert store.get("big/cond.bin") == data
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_missing_objects_raise_not_found_with_the_uri(
    moto_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = _store(s3_bucket, moto_server)
    uri = f"s3://{s3_bucket}/archive/no/such.nii.gz"
    for call in (
        lambda: store.get("no/such.nii.gz"),
        lambda: store.stat("no/such.nii.gz"),
        lambda: store.get_to_file("no/such.nii.gz", tmp_path / "x"),
    ):
        with pytest.raises(ObjectNotFoundError) as err:
            call()
        assert err.value.uri == uri
        assert uri in str(err.value)
        assert err.value.__cause__ is not None  # translated from the botocore error
    assert not store.exists("no/such.nii.gz")
    missing_bucket = _store("no-such-bucket-medcrypt", moto_server)
    with pytest.raises(ObjectNotFoundError, match="bucket"):
        missing_bucket.get("x")
    with pytest.raises(ObjectNotFoundError):
        list(missing_bucket.list())


@pytest.mark.parametrize("retry_mode", ["standard", "adaptive"])
def test_transient_faults_are_retried_and_nothing_is_lost(
    s3_bucket: str, flaky_proxy: FlakyProxy, retry_mode: str
) -> None:
    store = _store(
        s3_bucket, flaky_proxy.endpoint_url, max_attempts=5, page_size=3, retry_mode=retry_mode
    )
    payloads = {f"case{i}/encrypted.png": f"pixels of case {i}".encode() * 50 for i in range(6)}
    # every third request fails, cycling through SlowDown, InternalError and a TCP reset
    flaky_proxy.set_plan(FaultPlan(every=3, kinds=("slowdown", "internal", "reset")))
    for key, data in payloads.items():
        store.put(key, data)
    got = {key: store.get(key) for key in payloads}
    listed = [o.key for o in store.list()]
    injected = dict(flaky_proxy.injected)
    flaky_proxy.clear()

    assert got == payloads
    assert listed == sorted(payloads)
    assert set(injected) == {"slowdown", "internal", "reset"}
    assert sum(injected.values()) >= 4
    # and the endpoint really holds every object, checked without the proxy in the way
    assert {o.key for o in store.list()} == set(payloads)


@pytest.mark.parametrize("kind", ["slowdown", "reset"])
def test_exhausted_retries_raise_transient_storage_error(
    s3_bucket: str, flaky_proxy: FlakyProxy, kind: str
) -> None:
    store = _store(s3_bucket, flaky_proxy.endpoint_url, max_attempts=3)
    flaky_proxy.set_plan(FaultPlan(fail_first=1000, kinds=(kind,)))  # type: ignore[arg-type]
    with pytest.raises(TransientStorageError) as err:
        store.get("case1/image.nii.gz")
    assert flaky_proxy.injected[kind] == 3  # the first try and two botocore retries
    assert flaky_proxy.forwarded == 0
    assert err.value.operation == "get"
    assert err.value.uri == f"s3://{s3_bucket}/archive/case1/image.nii.gz"
    if kind == "slowdown":
        assert "3 attempt" in str(err.value) and "SlowDown" in str(err.value)


def test_conditional_put_whose_answer_was_lost_is_not_a_conflict(
    s3_bucket: str, flaky_proxy: FlakyProxy
) -> None:
    """The first PUT takes effect but its response is lost; botocore's retry then meets the
    object it wrote itself (412). That is our write, not a second writer's."""
    store = _store(s3_bucket, flaky_proxy.endpoint_url, max_attempts=4)
    flaky_proxy.set_plan(FaultPlan(fail_first=1, kinds=("lost_response",), methods=["PUT"]))
    info = store.put("case1/record.json", b'{"run": 1}', if_absent=True)
    assert flaky_proxy.injected["lost_response"] == 1
    assert flaky_proxy.forwarded >= 2  # the lost one and the retry both reached S3
    assert store.get("case1/record.json") == b'{"run": 1}'
    assert info.size == 10
    # a real second writer (different bytes, same lost answer) is still refused
    flaky_proxy.set_plan(FaultPlan(fail_first=1, kinds=("lost_response",), methods=["PUT"]))
    with pytest.raises(ObjectExistsError):
        store.put("case1/record.json", b'{"run": 2}', if_absent=True)
    assert store.get("case1/record.json") == b'{"run": 1}'


def test_conditional_multipart_whose_completion_answer_was_lost(
    s3_bucket: str, flaky_proxy: FlakyProxy
) -> None:
    """The completion takes effect but its answer is lost; the retried completion must not
    turn into a failure. (moto 5.2 answers a repeated completion with 200 rather than 412, so
    this checks the outcome, not S3Store's ETag comparison for the 412 case.)"""
    data = random.Random(3).randbytes(6 * MiB)
    store = _store(
        s3_bucket,
        flaky_proxy.endpoint_url,
        max_attempts=4,
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    # CompleteMultipartUpload is the POST carrying ?uploadId=
    flaky_proxy.set_plan(
        FaultPlan(
            fail_first=1, kinds=("lost_response",), methods=["POST"], path_contains="uploadId="
        )
    )
    info = store.put("big/cond.bin", data, if_absent=True)
    assert flaky_proxy.injected["lost_response"] == 1
    assert info.etag is not None and info.etag.endswith("-2")
    assert store.get("big/cond.bin") == data


def test_refusals_are_not_retried(s3_bucket: str, flaky_proxy: FlakyProxy) -> None:
    store = _store(s3_bucket, flaky_proxy.endpoint_url, max_attempts=5)
    flaky_proxy.set_plan(FaultPlan(fail_first=1000, kinds=("denied",)))
    with pytest.raises(StorageAccessError, match="AccessDenied") as err:
        store.put("case1/record.json", b"{}")
    assert flaky_proxy.injected["denied"] == 1  # one request, no retries
    assert err.value.uri == f"s3://{s3_bucket}/archive/case1/record.json"


def test_unreachable_endpoint_is_transient() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = _store("some-bucket", f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout=2)
    with pytest.raises(TransientStorageError, match="connection kept failing"):
        store.get("k")


def test_store_pickles_for_ray_workers(moto_server: str, s3_bucket: str) -> None:
    store = _store(s3_bucket, moto_server)
    store.put("k", b"v")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get("k") == b"v"
    assert clone.uri == store.uri


def test_credentials_are_never_logged(
    moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    secret = "SeCrEt-Do-Not-Log-4711"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    caplog.set_level(logging.DEBUG)
    # a pool size no other test uses, so this store builds a new client with the new secret
    store = _store(s3_bucket, moto_server, max_pool=7)
    store.put("k", b"v")
    store.get("k")
    with pytest.raises(StorageError):
        store.get("missing")
    assert caplog.records  # something was logged at debug level
    assert secret not in caplog.text
    assert secret not in repr(store)


def test_discover_and_manifest_over_s3(
    moto_server: str, s3_bucket: str, s3_client: Any, brats_cases: list[Path]
) -> None:
    """The real BraTS files in S3: discover writes a manifest to S3, read_manifest reads it."""
    from medcrypt.cluster import discover, read_manifest

    for case in brats_cases:
        for name in ("T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"):
            s3_client.upload_file(str(case / name), s3_bucket, f"brats/{case.name}/{name}")
        s3_client.put_object(Bucket=s3_bucket, Key=f"brats/{case.name}/notes.txt", Body=b"x")
    source = open_store(f"s3://{s3_bucket}/brats", endpoint_url=moto_server, page_size=2)
    out = f"s3://{s3_bucket}/manifests/brats.csv"
    summary = discover(source, layout="brats", out=out, endpoint_url=moto_server)
    assert (summary.cases, summary.skipped) == (4, 0)
    manifest = read_manifest(out, source=source.uri, endpoint_url=moto_server)
    rows = list(manifest)
    assert [r.case_id for r in rows] == [c.name for c in brats_cases]
    for row, case in zip(rows, brats_cases, strict=True):
        size = (case / "T1c_subtrMeanDivStd.nii.gz").stat().st_size
        assert source.stat(row.image).size == size  # the key names the real object
        assert row.mask == f"{case.name}/OTMultiClass.nii.gz"
