"""The archive job end to end: real S3 over HTTP (moto), a multi-node Ray cluster, real data.

One module-scoped archive in S3 holds the four real BraTS cases (uploaded from
``../shared/data`` by path), phantom cases (NIfTI and DICOM series), corrupt cases and a
"poison" case that kills its encrypt worker every time. Faults are injected for real: an S3
proxy answering 503/500/connection resets, SIGKILL of a live encrypt actor, SIGKILL of the
driver process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cases import (
    get_object,
    list_objects,
    new_bucket,
    put_manifest,
    save_owner,
    upload_broken,
    upload_phantoms,
)
from _flaky_proxy import FaultPlan, FlakyProxy
from _ray_cluster import POISON_CASE, encrypt_actor_pids, ray_cluster

from medcrypt.cluster import (
    CaseRecord,
    JobConfig,
    QuarantineRecord,
    RunSummary,
    job_config_from_mapping,
    load_job_config,
    run_job,
)
from medcrypt.errors import ConfigError, EncryptionKeyError, ManifestError, ModelError
from medcrypt.medical import decode_png16, load_case_slice
from medcrypt.processing import (
    EncryptionKey,
    PGDSettings,
    compute_summary,
    psnr,
)

pytestmark = pytest.mark.integration

__all__ = ["ray_cluster"]  # the fixture, re-exported so pytest finds it in this module

EPS = 1.0
BRATS_IMAGE = "T1c_subtrMeanDivStd.nii.gz"
BRATS_MASK = "OTMultiClass.nii.gz"
GOOD_PHANTOMS = [f"ph_nifti_{i}" for i in range(4)] + [f"ph_dicom_{i}" for i in range(2)]
BAD_CASES = ["corrupt_image", "empty_mask", POISON_CASE]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny base model (width 8) and a key, as local files on the driver."""
    # the job takes its PGD settings from the key (a contradicting config is refused)
    owner = save_owner(
        tmp_path_factory.mktemp("assets"), {"key": (7, PGDSettings(eps=EPS, step=0.25, iters=5))}
    )
    return {
        "model": owner["model"],
        "key_path": owner["key"],
        "key": owner["keys"]["key"],
        "hash": owner["hash"],
    }


@pytest.fixture(scope="module")
def archive(
    _s3_admin: Any, brats_cases: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Bucket with ``archive/`` (real BraTS + phantoms + bad cases) and ``manifest.csv``."""
    s3 = _s3_admin
    bucket = new_bucket(s3, "job")
    rows: list[dict[str, str]] = []
    for case in brats_cases:  # real data, by path; labels unknown -> predicted
        for name in (BRATS_IMAGE, BRATS_MASK):
            s3.upload_file(str(case / name), bucket, f"archive/{case.name}/{name}")
        rows.append(
            {
                "case_id": case.name,
                "image": f"{case.name}/{BRATS_IMAGE}",
                "mask": f"{case.name}/{BRATS_MASK}",
                "label": "",
            }
        )
    local = tmp_path_factory.mktemp("phantoms")
    rows += upload_phantoms(
        s3, bucket, local, [*GOOD_PHANTOMS, POISON_CASE], seed=100, shape=(48, 48, 16)
    )
    # corrupt image bytes; a mask with no tumour voxel
    rows += upload_broken(s3, bucket, local, donors=("ph_nifti_0", "ph_nifti_1"))
    put_manifest(s3, bucket, rows)
    return {"bucket": bucket, "rows": rows, "brats": {c.name: c for c in brats_cases}}


def _config(
    archive: dict[str, Any], assets: dict[str, Any], endpoint: str, dest: str, **kw: Any
) -> JobConfig:
    b = archive["bucket"]
    base: dict[str, Any] = dict(
        source=f"s3://{b}/archive",
        dest=f"s3://{b}/{dest}",
        manifest=f"s3://{b}/manifest.csv",
        key=str(assets["key_path"]),
        model=str(assets["model"]),
        endpoint_url=endpoint,
        pgd={"eps": EPS, "step": 0.25, "iters": 5},
        formats=("png", "nifti"),
        num_gpus=1,  # the worker nodes declare {"GPU": 1}: one actor per node
        actor_cpus=1,
        fetch_cpus=1,
        min_actors=2,
        max_actors=2,
        batch_size=3,
        actor_start_timeout_s=120,
    )
    base.update(kw)
    return job_config_from_mapping(base, source="test")


class _ActorKiller(threading.Thread):
    """SIGKILLs one live encrypt actor once the first record of the run exists."""

    def __init__(self, s3: Any, bucket: str, prefix: str, timeout: float = 150.0) -> None:
        super().__init__(daemon=True)
        self.s3, self.bucket, self.prefix, self.timeout = s3, bucket, prefix, timeout
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            records = [
                k
                for k in list_objects(self.s3, self.bucket, self.prefix)
                if k.endswith("/record.json")
            ]
            pids = encrypt_actor_pids() if records else []
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed.append(pids[0])
                return
            time.sleep(0.3)


@pytest.fixture(scope="module")
def first_run(
    ray_cluster: str,
    archive: dict[str, Any],
    assets: dict[str, Any],
    _flaky_proxy_server: FlakyProxy,
    _s3_admin: Any,
) -> Iterator[tuple[RunSummary, _ActorKiller, int]]:
    """The main run: flaky S3 on every GET/HEAD, an actor SIGKILLed mid-run, a poison case."""
    proxy = _flaky_proxy_server
    proxy.set_plan(
        FaultPlan(every=4, kinds=("slowdown", "internal", "reset"), methods=("GET", "HEAD"))
    )
    killer = _ActorKiller(_s3_admin, archive["bucket"], "out-main")
    killer.start()
    try:
        summary = run_job(_config(archive, assets, proxy.endpoint_url, "out-main"))
        injected = proxy.total_injected
    finally:
        killer.stop.set()
        killer.join(timeout=5)
        proxy.clear()
    yield summary, killer, injected


@pytest.mark.timeout(420)
def test_every_case_once_with_flaky_s3_killed_actor_and_bad_inputs(
    first_run: tuple[RunSummary, _ActorKiller, int],
    archive: dict[str, Any],
    assets: dict[str, Any],
    _s3_admin: Any,
) -> None:
    summary, killer, injected = first_run
    s3, bucket = _s3_admin, archive["bucket"]
    good = [*archive["brats"], *GOOD_PHANTOMS]
    assert injected > 0, "the proxy must really have failed some requests"
    assert killer.killed, "an encrypt actor must really have been killed mid-run"
    assert (summary.done, summary.skipped, summary.quarantined, summary.failed) == (
        len(good),
        0,
        len(BAD_CASES),
        0,
    ), summary
    assert summary.exit_code == 3 and summary.error is None

    objs = list_objects(s3, bucket, "out-main")
    records = sorted(k for k in objs if k.endswith("/record.json"))
    assert records == sorted(f"{c}/record.json" for c in good)  # each good case exactly once
    quarantined = sorted(k for k in objs if k.startswith("_quarantine/"))
    assert quarantined == sorted(f"_quarantine/{c}.json" for c in BAD_CASES)
    assert f"_runs/{summary.run_id}/summary.json" in objs
    allowed_top = {*good, "_quarantine", "_runs", "_ledger"}
    assert {k.split("/")[0] for k in objs} <= allowed_top  # nothing else, no _originals

    # quarantine reasons name the error, the case and (for input errors) the file
    reasons = {
        c: QuarantineRecord.model_validate_json(
            get_object(s3, bucket, f"out-main/_quarantine/{c}.json")
        )
        for c in BAD_CASES
    }
    assert reasons["corrupt_image"].stage == "fetch"
    assert "corrupt_image" in reasons["corrupt_image"].message
    assert "image.nii.gz" in reasons["corrupt_image"].message
    assert reasons["empty_mask"].stage == "fetch"
    assert reasons["empty_mask"].error_type == "EmptyMaskError"
    assert "empty_mask" in reasons["empty_mask"].message
    assert reasons[POISON_CASE].stage == "encrypt"
    assert "died" in reasons[POISON_CASE].message

    secret = assets["key"].secret.get_secret_value().encode()
    for key in objs:  # the key's secret never lands under dest
        assert secret not in get_object(s3, bucket, f"out-main/{key}")

    for case_id in good:
        rec = CaseRecord.model_validate_json(
            get_object(s3, bucket, f"out-main/{case_id}/record.json")
        )
        assert rec.run_id == summary.run_id
        assert rec.key_fingerprint == assets["key"].fingerprint
        assert rec.model_hash == assets["hash"]
        assert rec.pgd["eps"] == EPS and rec.pgd["iters"] == 5
        # what the PGD ran with on this hardware (precision "auto" resolves by CPU / GPU)
        assert rec.compute == compute_summary(PGDSettings(**rec.pgd), torch.device("cpu"))
        assert rec.metrics.l2 <= EPS and rec.metrics.within_eps
        # no part of the key's secret mapping: not the combiner, its parameters or the targets
        raw = get_object(s3, bucket, f"out-main/{case_id}/record.json").decode()
        assert "mixup" not in raw and "alpha" not in raw and '"targets"' not in raw
        assert rec.metrics.n_targets == len(assets["key"].targets[rec.label])
        for src in rec.sources:  # versions are the S3 ETags the job read
            key = src.uri.split(f"s3://{bucket}/", 1)[1]
            if src.version.startswith("series:"):
                assert case_id.startswith("ph_dicom")
                continue
            etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
            assert src.version == etag
        for out in rec.outputs:  # content-addressed outputs
            import hashlib

            assert (
                hashlib.sha256(get_object(s3, bucket, f"out-main/{out.key}")).hexdigest()
                == out.sha256
            )
        if case_id in archive["brats"]:
            assert rec.label_source == "predicted"
            folder = archive["brats"][case_id]
            sl = load_case_slice(folder / BRATS_IMAGE, folder / BRATS_MASK, case_id=case_id)
            assert rec.slice.canonical_index == sl.choice.canonical_index
            assert rec.window == pytest.approx(sl.window)
            png = decode_png16(get_object(s3, bucket, f"out-main/{case_id}/encrypted.png"))
            diff = png.astype(np.float64) - sl.array.astype(np.float64)
            assert float(np.sqrt(np.sum(diff**2))) == pytest.approx(rec.metrics.l2, abs=1e-6)
            assert float(psnr(sl.array[None], png[None])[0]) == pytest.approx(
                rec.metrics.psnr, abs=1e-6
            )
        else:
            assert rec.label_source == "given"


@pytest.mark.timeout(300)
def test_rerun_skips_done_cases_and_rewrites_nothing(
    first_run: tuple[RunSummary, _ActorKiller, int],
    archive: dict[str, Any],
    assets: dict[str, Any],
    ray_cluster: str,
    moto_server: str,
    _s3_admin: Any,
    tmp_path: Path,
) -> None:
    """Nightly rerun through the CLI: nothing new, nothing rewritten, exit code 0 (the cases
    quarantined by the first run are listed, not retried, and not this run's doing)."""
    from click.testing import CliRunner

    from medcrypt.cli import main

    before = list_objects(_s3_admin, archive["bucket"], "out-main")
    cfg = _config(archive, assets, moto_server, "out-main")
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")), encoding="utf-8")  # JSON is YAML
    result = CliRunner().invoke(main, ["-q", "encrypt", "-c", str(path), "--pgd-iters", "5"])
    assert result.exit_code == 0, result.output
    assert f"{len(BAD_CASES)} quarantined before (not retried)" in result.output
    assert f"0 done, {len(archive['brats']) + len(GOOD_PHANTOMS)} skipped" in result.output
    after = list_objects(_s3_admin, archive["bucket"], "out-main")
    for key, obj in before.items():
        assert (
            after[key]["ETag"] == obj["ETag"] and after[key]["LastModified"] == obj["LastModified"]
        ), key
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith("_runs/")


_DRIVER = """
import json, sys, ray
from medcrypt.cluster import run_job
from medcrypt.cluster._config import JobConfig
ray.init(address=sys.argv[1], log_to_driver=False)
run_job(JobConfig.model_validate(json.loads(sys.argv[2])))
"""


@pytest.mark.timeout(420)
def test_killed_driver_then_rerun_processes_only_the_remainder(
    ray_cluster: str,
    archive: dict[str, Any],
    assets: dict[str, Any],
    moto_server: str,
    _s3_admin: Any,
    tmp_path: Path,
) -> None:
    s3, bucket = _s3_admin, archive["bucket"]
    phantoms = [r for r in archive["rows"] if r["case_id"] in GOOD_PHANTOMS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case_id", "image", "mask", "label"])
    writer.writeheader()
    writer.writerows(phantoms)
    manifest = tmp_path / "phantoms.csv"
    manifest.write_text(buf.getvalue(), encoding="utf-8")
    cfg = _config(
        archive,
        assets,
        moto_server,
        "out-killed",
        manifest=str(manifest),
        batch_size=1,
        min_actors=1,
        max_actors=1,
        pgd={"eps": EPS, "step": 0.25, "iters": 40},
        override_key_pgd=True,  # slower than the key's 5 iterations: the kill lands mid-run
        claim_lease_s=5,  # the killed run's claims may be taken over 5 s after its last beat
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, ray_cluster, cfg.model_dump_json()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = [k for k in list_objects(s3, bucket, "out-killed") if k.endswith("/record.json")]
            if len(done) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the driver finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(6)  # Ray tears down the dead driver's workers; its claims grow stale
    first = {
        k.split("/")[0]: json.loads(get_object(s3, bucket, f"out-killed/{k}"))["run_id"]
        for k in list_objects(s3, bucket, "out-killed")
        if k.endswith("/record.json")
    }
    assert 2 <= len(first) < len(phantoms)
    summary = run_job(cfg)
    assert summary.skipped == len(first)
    assert summary.done == len(phantoms) - len(first)
    assert summary.quarantined == 0 and summary.exit_code == 0
    records = {
        k.split("/")[0]: json.loads(get_object(s3, bucket, f"out-killed/{k}"))["run_id"]
        for k in list_objects(s3, bucket, "out-killed")
        if k.endswith("/record.json")
    }
    assert sorted(records) == sorted(GOOD_PHANTOMS)  # every case exactly once
    for case_id, run_id in records.items():  # first run's records untouched
        assert run_id == first.get(case_id, summary.run_id)


@pytest.mark.timeout(120)
def test_bad_configs_manifests_and_uris_fail_before_any_work(
    archive: dict[str, Any],
    assets: dict[str, Any],
    moto_server: str,
    _s3_admin: Any,
    tmp_path: Path,
) -> None:
    s3, bucket = _s3_admin, archive["bucket"]
    with pytest.raises(ConfigError, match="dest"):
        _config(archive, assets, moto_server, "archive/inside")
    with pytest.raises(ConfigError, match="bucket"):
        _config(archive, assets, moto_server, "x", source="s3://Bad_Bucket/archive")
    with pytest.raises(ConfigError, match="pgd"):
        load_job_config(overrides={"source": "/tmp/a", "dest": "/tmp/b", "pgd_eps": -1.0})
    bad_manifest = tmp_path / "bad.csv"
    bad_manifest.write_text(
        "case_id,image,mask,label\nok1,a/i.nii.gz,a/m.nii.gz,meningioma\n"
        "_bad,b/i.nii.gz,b/m.nii.gz,\nok2,c/i.nii.gz,,nonsense\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as info:
        run_job(_config(archive, assets, moto_server, "out-bad", manifest=str(bad_manifest)))
    assert any("line 3" in p for p in info.value.problems)
    assert any("line 4" in p for p in info.value.problems)
    other_key = tmp_path / "key3.json"
    EncryptionKey.generate(("a", "b", "c"), combiner="mixup", seed=1).save(other_key)
    with pytest.raises(EncryptionKeyError):
        run_job(_config(archive, assets, moto_server, "out-bad", key=str(other_key)))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        run_job(_config(archive, assets, moto_server, "out-bad", model=str(broken)))
    assert list_objects(s3, bucket, "out-bad") == {}  # nothing written anywhere
