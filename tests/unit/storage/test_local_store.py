"""LocalStore: the same ObjectStore contract as S3, on a temporary folder."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest

from medcrypt.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
)
from medcrypt.storage import LocalStore, ObjectStore, open_store


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    s = open_store(tmp_path / "root")
    assert isinstance(s, LocalStore)
    return s


def test_open_store_gives_local_store_for_paths_and_file_uris(tmp_path: Path) -> None:
    a = open_store(str(tmp_path))
    b = open_store(f"file://{tmp_path}")
    assert isinstance(a, LocalStore) and isinstance(b, LocalStore)
    assert a.uri == b.uri == str(tmp_path.resolve())
    assert isinstance(a, ObjectStore)


def test_round_trip(store: LocalStore) -> None:
    info = store.put("case1/record.json", b"{}")
    assert (info.key, info.size, info.etag) == ("case1/record.json", 2, None)
    assert store.get("case1/record.json") == b"{}"
    assert store.exists("case1/record.json")
    assert store.stat("case1/record.json") == info
    assert (Path(store.uri) / "case1" / "record.json").read_bytes() == b"{}"
    store.put("case1/record.json", b"{1}")
    assert store.get("case1/record.json") == b"{1}"
    store.delete("case1/record.json")
    assert not store.exists("case1/record.json")
    store.delete("case1/record.json")


def test_version_changes_when_content_is_replaced(store: LocalStore) -> None:
    v1 = store.put("a", b"1").version
    os.utime(Path(store.uri) / "a", ns=(1_000_000_000, 1_000_000_000))
    v2 = store.put("a", b"22").version
    assert v1 != v2
    assert v2 == store.stat("a").version


def test_put_if_absent_refuses_the_second_writer(store: LocalStore) -> None:
    store.put("lock", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError) as err:
        store.put("lock", b"second", if_absent=True)
    assert err.value.uri == f"{store.uri}/lock"
    assert err.value.operation == "put"
    assert store.get("lock") == b"first"
    assert sorted(os.listdir(store.uri)) == ["lock"]  # no temp file left behind


def test_concurrent_if_absent_writers_exactly_one_wins(store: LocalStore) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            store.put("case/record.json", f"writer {i}".encode() * 1000, if_absent=True)
            results.append(f"won {i}")
        except ObjectExistsError:
            results.append("lost")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    won = [r for r in results if r.startswith("won")]
    assert len(results) == 8 and len(won) == 1
    assert store.get("case/record.json") == f"writer {won[0][4:]}".encode() * 1000


def test_listing_is_sorted_recursive_and_by_string_prefix(store: LocalStore) -> None:
    keys = ["c/1", "a/2", "a/10", "b/x.nii.gz", "a-z/3", "a/sub/4", "a/sub/5", "a.txt"]
    for k in keys:
        store.put(k, k.encode())
    # a write in flight leaves a hidden temp file: never listed
    (Path(store.uri) / "a" / ".medcrypt-tmp-abc").write_bytes(b"partial")
    listed = list(store.list())
    assert [o.key for o in listed] == sorted(keys)  # same order S3 gives
    assert {o.key: o.size for o in listed}["b/x.nii.gz"] == len(b"b/x.nii.gz")
    assert [o.key for o in store.list("a/")] == ["a/10", "a/2", "a/sub/4", "a/sub/5"]
    assert [o.key for o in store.list("a")] == sorted(k for k in keys if k.startswith("a"))
    assert [o.key for o in store.list("a/s")] == ["a/sub/4", "a/sub/5"]
    assert list(store.list("zzz/")) == []


def test_listing_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(LocalStore(tmp_path / "absent").list()) == []


def test_listing_is_lazy(store: LocalStore) -> None:
    store.put("a/1", b"")
    it = store.list()
    store.put("b/2", b"")  # created after the generator was made, before it ran
    assert [o.key for o in it] == ["a/1", "b/2"]


def test_missing_objects_raise_not_found_naming_the_uri(store: LocalStore, tmp_path: Path) -> None:
    for call in (
        lambda: store.get("no/such"),
        lambda: store.stat("no/such"),
        lambda: store.get_to_file("no/such", tmp_path / "out"),
    ):
        with pytest.raises(ObjectNotFoundError) as err:
            call()
        assert err.value.uri == f"{store.uri}/no/such"
    store.put("dir/file", b"x")
    with pytest.raises(ObjectNotFoundError):
        store.get("dir")
    with pytest.raises(ObjectNotFoundError):
        store.stat("dir")
    assert not store.exists("dir")


@pytest.mark.parametrize("bad", ["", "/abs", "../escape", "a/../../b", "a//b", "a/./b", "a\\b"])
def test_bad_keys_are_refused(store: LocalStore, bad: str) -> None:
    with pytest.raises(StorageError, match="expected"):
        store.put(bad, b"x")
    with pytest.raises(StorageError):
        store.get(bad)


def test_get_to_file_is_atomic_and_complete(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    store.put("big.bin", data)
    target = tmp_path / "dl" / "big.bin"
    store.get_to_file("big.bin", target)
    assert target.read_bytes() == data
    assert os.listdir(target.parent) == ["big.bin"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied_is_an_access_error(store: LocalStore) -> None:
    store.put("secret/x", b"1")
    folder = Path(store.uri) / "secret"
    folder.chmod(0o000)
    try:
        with pytest.raises(StorageAccessError):
            store.get("secret/x")
    finally:
        folder.chmod(0o755)


def test_store_pickles(store: LocalStore) -> None:
    store.put("k", b"v")
    assert pickle.loads(pickle.dumps(store)).get("k") == b"v"


def test_put_where_a_file_is_in_the_way(store: LocalStore) -> None:
    store.put("case1", b"a file, not a folder")
    with pytest.raises(StorageError, match="in the way") as err:
        store.put("case1/record.json", b"{}")
    assert type(err.value) is StorageError
    assert err.value.uri == f"{store.uri}/case1/record.json"
