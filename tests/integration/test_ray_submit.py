"""The README's cluster route on a real local head (``ray start --head``, token auth on):
``medcrypt submit`` (and ``ray job submit``) of the documented nightly command against the
moto S3 endpoint, with the exit codes the README documents (issue 15, item 9)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _ray_head import RayHead, ray_head

from medcrypt.medical import CLASS_NAMES, write_phantom_case
from medcrypt.processing import EncryptionKey, PGDSettings, build_model, save_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

__all__ = ["ray_head"]  # the fixture, re-exported so pytest finds it in this module


@pytest.fixture(scope="module")
def job_dir(
    _s3_admin: Any, moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The folder `medcrypt submit` uploads: job.yaml, model and key (an archive in S3 with
    two good cases and a corrupt one)."""
    s3 = _s3_admin
    bucket = f"submit-{os.getpid()}-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    local = tmp_path_factory.mktemp("cases")
    rows = []
    for i, case in enumerate(("case_a", "case_b", "corrupt")):
        image, mask = write_phantom_case(local / case, label=i, seed=70 + i, shape=(32, 32, 8))
        if case == "corrupt":
            image.write_bytes(b"\x1f\x8bnot a volume")
        for p in (image, mask):
            s3.upload_file(str(p), bucket, f"archive/{case}/{p.name}")
        rows.append(
            {"case_id": case, "image": f"{case}/{image.name}", "mask": f"{case}/{mask.name}"}
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case_id", "image", "mask"])
    writer.writeheader()
    writer.writerows(rows)
    s3.put_object(Bucket=bucket, Key="manifest.csv", Body=buf.getvalue().encode())
    d = tmp_path_factory.mktemp("repo")
    model = build_model("resnet18", len(CLASS_NAMES), width=8)
    save_checkpoint(d / "model.pt", model, arch="resnet18", class_names=CLASS_NAMES, width=8)
    pgd = PGDSettings(eps=0.8, step=0.3, iters=2)
    EncryptionKey.generate(CLASS_NAMES, combiner="concat", seed=5, pgd=pgd).save(d / "key.json")
    job = {
        "source": f"s3://{bucket}/archive",
        "dest": f"s3://{bucket}/protected",
        "manifest": f"s3://{bucket}/manifest.csv",
        "endpoint_url": moto_server,
        "key": "key.json",
        "model": "model.pt",
        "formats": ["png"],
        "actor_cpus": 0.5,
        "fetch_cpus": 0.5,
        "batch_size": 4,
    }
    (d / "job.yaml").write_text(json.dumps(job), encoding="utf-8")  # JSON is YAML
    (d / "bad.yaml").write_text(json.dumps({**job, "formats": ["gif"]}), encoding="utf-8")
    return {"dir": d, "bucket": bucket}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )


def _env(head: RayHead, *, token: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_ADDRESS"] = head.address  # as the README's cron line sets it
    if token:
        env.update(head.client_env)
    return env


def _bin(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert path, f"{name} is not installed"
    return path


@pytest.mark.timeout(420)
def test_documented_nightly_route_keeps_the_exit_codes(
    ray_head: RayHead, job_dir: dict[str, Any], _s3_admin: Any
) -> None:
    d = job_dir["dir"]
    nightly = [_bin("medcrypt"), "submit", "--", "-q", "encrypt", "-c", "job.yaml"]

    # without RAY_AUTH_MODE=token the client sends no token: refused, nothing ran
    refused = _run(nightly, _env(ray_head, token=False), d)
    assert refused.returncode == 4, refused.stderr
    assert "RAY_AUTH_MODE=token" in refused.stderr
    plain = _run(
        [_bin("ray"), "job", "submit", "--working-dir", ".", "--", "medcrypt", "--help"],
        _env(ray_head, token=False),
        d,
    )
    assert plain.returncode != 0 and "auth" in (plain.stdout + plain.stderr).lower()

    env = _env(ray_head, token=True)
    first = _run(nightly, env, d)  # the corrupt case is quarantined: 3
    assert first.returncode == 3, first.stdout + first.stderr
    assert "2 done, 0 skipped, 1 quarantined" in first.stdout
    again = _run(nightly, env, d)  # nothing new; the old quarantine is listed, not counted
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 done, 2 skipped, 0 quarantined" in again.stdout
    bad = _run([*nightly[:-1], "bad.yaml"], env, d)  # refused before any work: 2
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "formats" in bad.stdout

    keys = [
        o["Key"]
        for o in _s3_admin.list_objects_v2(Bucket=job_dir["bucket"], Prefix="protected/")[
            "Contents"
        ]
    ]
    assert sum(k.endswith("/record.json") for k in keys) == 2
