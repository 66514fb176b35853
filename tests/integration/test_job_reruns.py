"""Reruns and concurrent runs of the archive job, over HTTP (moto S3 server) on a local Ray.

Issue 15: two runs into one dest claim each case once (item 3); a rerun redoes a case whose
record or output was deleted, deciding from its one listing (item 4); changed settings are
reported per case and redone only with ``--redo`` and a used ``--run-id`` is refused
(item 5); the exit code describes this run's quarantines only (item 6).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cases import get_object, list_objects, new_bucket, put_manifest, save_owner, upload_phantoms
from _flaky_proxy import FaultPlan, FlakyProxy
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.cluster import CaseRecord, JobConfig, RunSummary, job_config_from_mapping, run_job
from medcrypt.errors import ConfigError
from medcrypt.processing import PGDSettings

pytestmark = pytest.mark.integration

GOOD = [f"nifti_{i}" for i in range(5)] + ["dicom_0"]
BAD = "corrupt_image"


@pytest.fixture(scope="module")
def ray_address(aws_env: dict[str, str]) -> Iterator[str]:
    """A local Ray for this module (or the session's cluster when one already runs)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = save_owner(
        tmp_path_factory.mktemp("owner"),
        {
            "key": (3, PGDSettings(eps=0.8, step=0.3, iters=2)),
            # slow PGD, so that two concurrent runs overlap for many seconds
            "slow": (4, PGDSettings(eps=0.8, step=0.05, iters=150)),
        },
    )
    return {"model": made["model"], "key": made["key"], "slow": made["slow"]}


@pytest.fixture(scope="module")
def archive(_s3_admin: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bucket with ``archive/`` (5 NIfTI, 1 DICOM series, 1 corrupt case) and a manifest."""
    bucket = new_bucket(_s3_admin, "reruns")
    local = tmp_path_factory.mktemp("archive")
    rows = upload_phantoms(
        _s3_admin, bucket, local, [*GOOD, BAD], seed=40, shape=(32, 32, 8), corrupt={BAD}
    )
    put_manifest(_s3_admin, bucket, rows)
    return bucket


def _mapping(bucket: str, owner: dict[str, Path], endpoint: str, dest: str, **kw: Any) -> dict:
    base: dict[str, Any] = dict(
        source=f"s3://{bucket}/archive",
        dest=f"s3://{bucket}/{dest}",
        manifest=f"s3://{bucket}/manifest.csv",
        key=str(owner["key"]),
        model=str(owner["model"]),
        endpoint_url=endpoint,
        formats=("png", "dicom"),
        num_gpus=0,
        actor_cpus=0.5,
        fetch_cpus=0.5,
        min_actors=1,
        max_actors=1,
        batch_size=2,
        actor_start_timeout_s=120,
    )
    base.update(kw)
    return base


def _config(*args: Any, **kw: Any) -> JobConfig:
    return job_config_from_mapping(_mapping(*args, **kw), source="test")


def _record(s3: Any, bucket: str, dest: str, case: str) -> CaseRecord:
    return CaseRecord.model_validate_json(get_object(s3, bucket, f"{dest}/{case}/record.json"))


def _consistent(s3: Any, bucket: str, dest: str, case: str) -> CaseRecord:
    """The case's record, after checking every output it lists has the bytes it names."""
    rec = _record(s3, bucket, dest, case)
    for out in rec.outputs:
        data = get_object(s3, bucket, f"{dest}/{out.key}")
        assert hashlib.sha256(data).hexdigest() == out.sha256, (case, out.key)
    return rec


@pytest.mark.timeout(240)
def test_rerun_exit_code_counts_only_new_quarantines_and_reads_nothing_per_case(
    ray_address: str,
    archive: str,
    owner: dict[str, Path],
    _flaky_proxy_server: FlakyProxy,
    _s3_admin: Any,
) -> None:
    """Item 6, and item 4's "one listing": a rerun with nothing to do exits 0 (the old
    quarantine is listed, not counted) and reads no object under dest."""
    proxy = _flaky_proxy_server
    first = run_job(_config(archive, owner, proxy.endpoint_url, "quiet"))
    assert (first.done, first.quarantined, first.exit_code) == (len(GOOD), 1, 3)
    assert [c.split(":")[0] for c in first.quarantined_cases] == [BAD]
    # count every GET/HEAD of an object under dest (not the listing: its path is the bucket)
    proxy.set_plan(FaultPlan(methods=("GET", "HEAD"), path_contains=f"/{archive}/quiet/"))
    try:
        again = run_job(_config(archive, owner, proxy.endpoint_url, "quiet"))
        reads = proxy.eligible
    finally:
        proxy.clear()
    assert (again.done, again.skipped, again.quarantined) == (0, len(GOOD), 0), again
    assert again.quarantined_before == 1 and again.quarantined_before_cases[0].startswith(BAD)
    assert again.exit_code == 0
    assert reads == 0, f"{reads} reads of dest objects for a rerun decided from one listing"


@pytest.mark.timeout(240)
def test_rerun_restores_deleted_outputs_and_records(
    ray_address: str, archive: str, owner: dict[str, Path], moto_server: str, _s3_admin: Any
) -> None:
    """Item 4: a deleted output or record is restored by the next run, nothing else redone."""
    s3 = _s3_admin
    cfg = _config(archive, owner, moto_server, "heal")
    first = run_job(cfg)
    assert first.done == len(GOOD)
    before = list_objects(s3, archive, "heal")
    s3.delete_object(Bucket=archive, Key="heal/nifti_0/encrypted.png")
    s3.delete_object(Bucket=archive, Key="heal/nifti_1/record.json")
    s3.delete_object(Bucket=archive, Key="heal/dicom_0/encrypted.dcm")
    healed = run_job(cfg)
    assert (healed.done, healed.skipped) == (3, len(GOOD) - 3), healed
    after = list_objects(s3, archive, "heal")
    for case in GOOD:
        rec = _consistent(s3, archive, "heal", case)
        assert {o.key for o in rec.outputs} == {f"{case}/encrypted.png", f"{case}/encrypted.dcm"}
        redone = case in ("nifti_0", "nifti_1", "dicom_0")
        assert rec.run_id == (healed.run_id if redone else first.run_id), case
        if not redone:  # untouched: same bytes, not even rewritten
            for key in (f"{case}/record.json", f"{case}/encrypted.png"):
                assert after[key]["LastModified"] == before[key]["LastModified"], key
    # one marker per case, describing what is there now; no claims left behind
    markers = [k for k in after if k.startswith("_ledger/") and not k.endswith(".quarantined")]
    assert len(markers) == len(GOOD)
    assert not [k for k in after if k.startswith("_claims/")]


@pytest.mark.timeout(300)
def test_changed_settings_are_reported_and_redone_only_with_redo(
    ray_address: str,
    archive: str,
    owner: dict[str, Path],
    moto_server: str,
    _s3_admin: Any,
    tmp_path: Path,
) -> None:
    """Item 5: other formats -> "changed" per case, nothing rewritten, exit 0; --redo changed
    replaces them (old outputs gone, records last); a used --run-id is refused."""
    s3 = _s3_admin
    first = run_job(_config(archive, owner, moto_server, "change", run_id="night-1"))
    assert first.done == len(GOOD)
    before = list_objects(s3, archive, "change")
    path = tmp_path / "job.yaml"
    cfg = _mapping(archive, owner, moto_server, "change", formats=["png", "nifti"])
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML

    result = CliRunner().invoke(main, ["-q", "encrypt", "-c", str(path), "--run-id", "night-2"])
    # the quarantined case is retried with the new settings (they might have fixed it): 3
    assert result.exit_code == 3, result.output
    assert f"{len(GOOD)} changed (not redone; --redo changed)" in result.output
    assert "nifti_0: settings (PGD, formats, slice) differ from the record" in result.output
    after = list_objects(s3, archive, "change")
    for key in after.keys() - before.keys():  # the summary, the bad case's new marker
        assert key == "_runs/night-2/summary.json" or key.startswith(f"_ledger/{BAD}/"), key
    for key, obj in before.items():
        if not key.startswith(("_ledger/", "_quarantine/")):
            assert after[key]["LastModified"] == obj["LastModified"], key

    dry = CliRunner().invoke(main, ["encrypt", "-c", str(path), "--dry-run"])
    assert f"0 new, 0 skipped, {len(GOOD)} changed, 1 quarantined" in dry.output, dry.output

    # a used run id: refused before any work, the first summary kept
    reused = CliRunner().invoke(main, ["-q", "encrypt", "-c", str(path), "--run-id", "night-1"])
    assert reused.exit_code == 2 and "night-1" in reused.output, reused.output
    kept = RunSummary.model_validate_json(
        get_object(s3, archive, "change/_runs/night-1/summary.json")
    )
    assert kept.run_id == "night-1" and kept.done == len(GOOD)

    redo = CliRunner().invoke(
        main, ["-q", "encrypt", "-c", str(path), "--run-id", "night-3", "--redo", "changed"]
    )
    assert redo.exit_code == 0, redo.output
    summary = RunSummary.model_validate_json(
        get_object(s3, archive, "change/_runs/night-3/summary.json")
    )
    assert (summary.done, summary.changed, summary.quarantined_before) == (len(GOOD), 0, 1)
    after = list_objects(s3, archive, "change")
    for case in GOOD:
        rec = _consistent(s3, archive, "change", case)
        assert rec.run_id == "night-3"
        assert {o.format for o in rec.outputs} == {"png", "nifti"}
        assert f"{case}/encrypted.dcm" not in after  # the old format's output is gone
    with pytest.raises(ConfigError, match="run id"):
        run_job(_config(archive, owner, moto_server, "change", run_id="night-3"))


_DRIVER = """
import json, sys, ray
from medcrypt.cluster import run_job
from medcrypt.cluster import job_config_from_mapping
ray.init(address=sys.argv[1], log_to_driver=False)
s = run_job(job_config_from_mapping(json.loads(sys.argv[2]), source="test"))
print("SUMMARY " + s.model_dump_json())
"""


def _driver(address: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, address, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _summary_of(proc: subprocess.Popen[str]) -> RunSummary:
    out, _ = proc.communicate(timeout=240)
    lines = [line for line in out.splitlines() if line.startswith("SUMMARY ")]
    assert proc.returncode == 0 and lines, out
    return RunSummary.model_validate_json(lines[-1][len("SUMMARY ") :])


@pytest.mark.slow  # about a minute on 2 idle cores: two drivers with slow PGD, overlapping
@pytest.mark.timeout(360)
def test_two_concurrent_runs_claim_each_case_once(
    ray_address: str, archive: str, owner: dict[str, Path], moto_server: str, _s3_admin: Any
) -> None:
    """Item 3: two runs started together into one dest: every case done by exactly one of
    them, each summary counting only what it wrote, no output rewritten by the other."""
    s3 = _s3_admin
    cfg = _mapping(archive, owner, moto_server, "both", key=str(owner["slow"]), batch_size=1)
    runs = [_driver(ray_address, {**cfg, "run_id": name}) for name in ("run-a", "run-b")]
    a, b = (_summary_of(p) for p in runs)
    assert a.done + b.done == len(GOOD), (a, b)
    assert a.quarantined + b.quarantined == 1
    objs = list_objects(s3, archive, "both")
    owners = {case: _consistent(s3, archive, "both", case).run_id for case in GOOD}
    assert sum(r == "run-a" for r in owners.values()) == a.done
    assert sum(r == "run-b" for r in owners.values()) == b.done
    for s in (a, b):  # every case accounted for by each run, none failed
        left = s.skipped + s.claimed_elsewhere + s.quarantined_before
        assert s.done + s.quarantined + left == len(GOOD) + 1 and s.failed == 0, s
    assert not [k for k in objs if k.startswith("_claims/")]
    assert [k for k in objs if k.startswith("_runs/") and k.endswith("heartbeat")] == []


@pytest.mark.timeout(240)
def test_a_killed_runs_claim_is_taken_over_after_the_lease(
    ray_address: str, archive: str, owner: dict[str, Path], moto_server: str, _s3_admin: Any
) -> None:
    """Item 3, stale claims: a claim whose run has no fresh heartbeat is older than the lease:
    the next run takes the case over; a younger one is left to its run."""
    s3 = _s3_admin
    ghost = json.dumps({"run_id": "ghost", "case_id": "nifti_0"}).encode()
    s3.put_object(Bucket=archive, Key="stale/_claims/nifti_0/000000", Body=ghost)
    young = run_job(_config(archive, owner, moto_server, "stale", claim_lease_s=120))
    # the claim is younger than the lease: its run may still be working
    assert young.claimed_elsewhere == 1 and young.done == len(GOOD) - 1
    time.sleep(5.5)
    old = run_job(_config(archive, owner, moto_server, "stale", claim_lease_s=5))
    assert (old.done, old.claimed_elsewhere) == (1, 0), old
    assert _record(s3, archive, "stale", "nifti_0").run_id == old.run_id
    assert not [k for k in list_objects(s3, archive, "stale") if k.startswith("_claims/")]
