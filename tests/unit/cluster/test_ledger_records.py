"""Ledger index (one listing of dest), record models, digests and exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medcrypt.cluster._ledger import (
    marker_key,
    output_key,
    quarantine_key,
    record_key,
    scan_dest,
    summary_key,
)
from medcrypt.cluster._records import QuarantineRecord, SourceObject, software_versions
from medcrypt.cluster._records import source_digest as digest_of
from medcrypt.cluster._summary import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_QUARANTINED,
    RunSummary,
    StageTimings,
)
from medcrypt.storage import ObjectInfo, open_store


class CountingStore:
    """Wraps a real store and counts requests, to prove the ledger lists once."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.uri = inner.uri  # type: ignore[attr-defined]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls.append(f"list:{prefix}")
        return self.inner.list(prefix)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        self.calls.append(name)
        return getattr(self.inner, name)


def _src(version: str = "v1") -> list[SourceObject]:
    return [
        SourceObject(role="image", uri="s3://b/c1/img.nii.gz", version=version),
        SourceObject(role="mask", uri="s3://b/c1/mask.nii.gz", version="m1"),
    ]


def test_digest_changes_with_version_and_key_and_not_with_order() -> None:
    base = digest_of(_src(), "fp-a")
    assert base == digest_of(list(reversed(_src())), "fp-a")
    assert base != digest_of(_src("v2"), "fp-a")
    assert base != digest_of(_src(), "fp-b")


def test_scan_dest_indexes_with_a_single_listing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "dest"))
    store.put(record_key("c1"), b"{}")
    store.put(output_key("c1", "png"), b"png")
    store.put(marker_key("c1", "d1"), b"")
    store.put(marker_key("c1", "d0"), b"")
    store.put(record_key("c2"), b"{}")  # record without marker
    store.put(quarantine_key("c3"), b"{}")
    store.put(summary_key("run1"), b"{}")
    counting = CountingStore(store)
    index = scan_dest(counting)  # type: ignore[arg-type]
    assert counting.calls == ["list:"]
    assert sorted(index.prior_digests("c1")) == ["d0", "d1"]
    assert index.prior_digests("c2") == []
    assert index.has_record("c1") and index.has_record("c2") and not index.has_record("c3")
    assert index.was_quarantined("c3") and not index.was_quarantined("c1")
    assert index.objects == 7


def test_quarantine_record_is_strict_and_has_no_secret_fields() -> None:
    rec = QuarantineRecord(
        case_id="c1",
        run_id="r",
        created_at="now",
        stage="fetch",
        error_type="ImageFormatError",
        message="case 'c1', file 'x': bad",
        key_fingerprint="fp",
        software=software_versions(),
    )
    data = rec.model_dump()
    assert "secret" not in str(sorted(data))
    with pytest.raises(ValueError):
        QuarantineRecord.model_validate({**data, "extra": 1})
    with pytest.raises(ValueError):
        QuarantineRecord.model_validate({**data, "stage": "somewhere"})


@pytest.mark.parametrize(
    ("quarantined", "failed", "error", "code"),
    [
        (0, 0, None, EXIT_OK),
        (2, 0, None, EXIT_QUARANTINED),
        (2, 1, None, EXIT_JOB_FAILED),
        (0, 0, "RayError: x", EXIT_JOB_FAILED),
    ],
)
def test_exit_codes(quarantined: int, failed: int, error: str | None, code: int) -> None:
    s = RunSummary(
        run_id="r",
        source="s",
        dest="d",
        started_at="a",
        finished_at="b",
        total=10,
        done=10 - quarantined - failed,
        skipped=0,
        quarantined=quarantined,
        failed=failed,
        wall_s=1.0,
        cases_per_s=1.0,
        stage_totals=StageTimings(),
        key_fingerprint="fp",
        model_hash="h",
        error=error,
    )
    assert s.exit_code == code
    assert len({EXIT_OK, EXIT_QUARANTINED, EXIT_JOB_FAILED}) == 3
