"""What the archive job releases, end to end over HTTP (moto S3 server) on a local Ray.

- the key's PGD settings rule; a contradicting flag is refused (exit 2, no progress line),
  or applied with ``--override-key-pgd`` and recorded in every record (issue 15, item 1);
- "no leaks": a run over good and broken cases that carry known patient identifiers and
  UIDs, with a key whose secret and mapping are known, and every byte written under dest
  (JSON, PNG text chunks, decompressed NIfTI, DICOM) scanned for them, for local paths and
  for key fields: zero hits (items 2 and 11); quarantine reasons name the source URI;
- ``--layout`` folders that are not valid cases are listed in the dry run and the summary
  (item 7); every DICOM output of that run passes ``dciodvfy`` (0 Error lines), the
  narrow-range phantoms (window < 1) as well as the wide ones (item 8).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from _cases import (
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    build_identified_archive,
    get_object,
    list_objects,
    new_bucket,
    object_bodies,
    save_owner,
    upload_dir,
)
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.cluster import (
    CaseRecord,
    JobConfig,
    QuarantineRecord,
    RunSummary,
    job_config_from_mapping,
    run_job,
)
from medcrypt.errors import ConfigError
from medcrypt.processing import EncryptionKey, PGDSettings

pytestmark = pytest.mark.integration

KEY_SEED = 918273645
KEY_PGD = PGDSettings(eps=0.6, step=0.2, iters=3)


@pytest.fixture(scope="module")
def ray_local(aws_env: dict[str, str]) -> Iterator[None]:
    """A local Ray for this module (or the session's cluster when one already runs)."""
    import ray

    started = not ray.is_initialized()
    if started:
        # address="local": a fresh instance, never a cluster another test started on this host
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    owner = save_owner(tmp_path_factory.mktemp("owner"), {"key": (KEY_SEED, KEY_PGD)})
    return {
        "dir": owner["dir"],
        "model": owner["model"],
        "key_path": owner["key"],
        "key": owner["keys"]["key"],
    }


@pytest.fixture(scope="module")
def archive(_s3_admin: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("archive-src")
    found = build_identified_archive(root)
    bucket = new_bucket(_s3_admin, "release")
    upload_dir(_s3_admin, bucket, root, "archive")
    return {**found, "bucket": bucket, "root": root}


def _png_text(data: bytes) -> bytes:
    """The text chunks (tEXt, zTXt decompressed, iTXt) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind in (b"tEXt", b"iTXt"):
            out.append(body)
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            out.append(keyword + zlib.decompress(rest[1:]))
        pos += 12 + length
    return b"\n".join(out)


def _readable(name: str, data: bytes) -> list[bytes]:
    """Every form of one dest object a reader could look at."""
    forms = [data]
    if name.endswith(".gz"):
        forms.append(gzip.decompress(data))
    if name.endswith(".png"):
        forms.append(_png_text(data))
    if name.endswith(".dcm"):
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        forms.append(
            "\n".join(str(el.value) for el in ds.iterall() if el.keyword != "PixelData").encode()
        )
    return forms


def _config(
    archive: dict[str, Any], secrets: dict[str, Any], endpoint: str, dest: str, **kw: Any
) -> JobConfig:
    b = archive["bucket"]
    base: dict[str, Any] = dict(
        source=f"s3://{b}/archive",
        dest=f"s3://{b}/{dest}",
        layout="case-folders",
        key=str(secrets["key_path"]),
        model=str(secrets["model"]),
        endpoint_url=endpoint,
        formats=("png", "nifti", "dicom"),
        num_gpus=0,
        min_actors=1,
        max_actors=1,
        batch_size=4,
        actor_start_timeout_s=120,
        run_id=dest,
    )
    base.update(kw)
    return job_config_from_mapping(base, source="test")


def _cli_args(
    archive: dict[str, Any], secrets: dict[str, Any], endpoint: str, dest: str
) -> list[str]:
    b = archive["bucket"]
    return [
        "encrypt",
        "--source",
        f"s3://{b}/archive",
        "--dest",
        f"s3://{b}/{dest}",
        "--layout",
        "case-folders",
        "--key",
        str(secrets["key_path"]),
        "--model",
        str(secrets["model"]),
        "--endpoint-url",
        endpoint,
        "--num-gpus",
        "0",
    ]


@pytest.mark.timeout(300)
def test_no_identifier_path_uid_or_key_field_reaches_dest(
    ray_local: None,
    archive: dict[str, Any],
    secrets_dir: dict[str, Any],
    moto_server: str,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    bucket = archive["bucket"]
    # no budget given: the key's; precision only chooses how PGD is computed (no override)
    cfg = _config(archive, secrets_dir, moto_server, "released", pgd={"precision": "fp32"})

    # dry run: the folders that are not cases are listed, with why
    dry = CliRunner().invoke(
        main, [*_cli_args(archive, secrets_dir, moto_server, "released"), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert any(
        ln.startswith("left-out") and "no_mask_case" in ln and "no mask" in ln for ln in lines
    ), dry.output
    assert any(
        ln.startswith("left-out") and "bad name (copy)" in ln and "not a valid case id" in ln
        for ln in lines
    ), dry.output
    assert "2 folder(s) left out" in lines[-1]

    summary = run_job(cfg)
    n_good, n_broken = len(archive["good"]), len(archive["broken"])
    assert (summary.total, summary.done, summary.quarantined) == (
        n_good + n_broken,
        n_good,
        n_broken,
    ), summary
    assert summary.skipped_folders_total == 2
    assert sorted(t.split(":")[0] for t in summary.skipped_folders) == sorted(archive["left_out"])

    dest = object_bodies(s3_client, bucket, "released")
    stored = RunSummary.model_validate_json(dest["_runs/released/summary.json"])
    assert stored.skipped_folders == summary.skipped_folders

    # quarantine: one record per broken case, its reason naming the case and a source URI
    for case in archive["broken"]:
        rec = QuarantineRecord.model_validate_json(dest[f"_quarantine/{case}.json"])
        assert f"s3://{bucket}/archive/{case}/" in rec.message, (case, rec.message)
        assert repr(case) in rec.message, rec.message
        assert "<downloaded copy>" not in rec.message and "<local temp" not in rec.message
    assert "2 mixed series" in json.loads(dest["_quarantine/mixed_series.json"])["message"]

    # every dest byte, in every readable form, against everything that must stay home
    key: EncryptionKey = secrets_dir["key"]
    forbidden: dict[str, str] = {
        "patient name": PATIENT_NAME,
        "patient name part": "Quinnella",
        "patient id": PATIENT_ID,
        "birth date": BIRTH_DATE,
        "key secret": key.secret.get_secret_value(),
        "key seed": str(KEY_SEED),
        "combiner name": key.combiner,
        "temp folder": tempfile.gettempdir().rstrip("/") + "/",
        "source root": str(archive["root"]),
        "owner's folder": str(secrets_dir["dir"]),
        "fetch folder": "medcrypt-fetch-",
    }
    for i, uid in enumerate(archive["uids"]):
        forbidden[f"source UID {i}"] = uid
    for y, params in enumerate(key.combiner_params):
        for j, p in enumerate(params):
            forbidden[f"combiner parameter {y}.{j}"] = repr(float(p))
    json_fields = ("targets", "combiner", "combiner_params", "secret", "allow_fixed_points")
    hits: list[str] = []
    for name, data in dest.items():
        for form in _readable(name, data):
            for what, text in forbidden.items():
                if text.encode() in form:
                    hits.append(f"{name}: {what}")
        if name.endswith(".json"):
            doc = json.loads(data)
            text = json.dumps(doc)
            for field in json_fields:
                if re.search(rf'"{field}"\s*:', text):
                    hits.append(f"{name}: JSON field {field!r}")
    assert hits == []
    assert len([n for n in dest if n.endswith(".dcm")]) == n_good

    # every DICOM output is valid, the narrow-range ones (window < 1) as well as the wide
    if shutil.which("dciodvfy") is not None:
        widths = {}
        for case in archive["good"]:
            out = tmp_path / f"{case}.dcm"
            out.write_bytes(dest[f"{case}/encrypted.dcm"])
            widths[case] = float(pydicom.dcmread(out).WindowWidth)
            report = subprocess.run(
                ["dciodvfy", str(out)], capture_output=True, text=True, timeout=60, check=False
            )
            text = report.stdout + report.stderr
            assert "SCImage" in text
            assert [ln for ln in text.splitlines() if ln.startswith("Error")] == [], (case, text)
        assert min(widths.values()) < 1.0 < 100.0 < max(widths.values()), widths

    # records: the key's PGD settings (issue 15 item 1: they were the job's defaults, eps 2.0),
    # no overrides, L2 within the key's budget
    assert summary.pgd_overrides == {} and summary.pgd["eps"] == KEY_PGD.eps
    for case in archive["good"]:
        rec = CaseRecord.model_validate_json(dest[f"{case}/record.json"])
        assert rec.pgd == {**KEY_PGD.model_dump(mode="json"), "precision": "fp32"}
        assert rec.pgd_overrides == {}
        assert rec.metrics.eps == KEY_PGD.eps and rec.metrics.l2 <= KEY_PGD.eps * (1 + 1e-9)


@pytest.mark.timeout(300)
def test_the_keys_pgd_settings_rule_and_an_override_is_explicit_and_recorded(
    ray_local: None,
    archive: dict[str, Any],
    secrets_dir: dict[str, Any],
    moto_server: str,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    b = archive["bucket"]
    manifest = tmp_path / "one.csv"
    manifest.write_text(
        "case_id,image,mask,label\ngood_nifti_wide,good_nifti_wide/image.nii.gz,"
        "good_nifti_wide/mask.nii.gz,meningioma\n",
        encoding="utf-8",
    )
    args = [
        *_cli_args(archive, secrets_dir, moto_server, "pgd-refused"),
        "--manifest",
        str(manifest),
    ]
    args.remove("--layout")
    args.remove("case-folders")

    # a flag that contradicts the key: refused before any work, exit 2, no progress line
    refused = CliRunner().invoke(main, [*args, "--pgd-eps", "2.0", "--pgd-iters", "3"])
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("error: the job's PGD settings contradict the key's")
    assert "--pgd-eps (pgd.eps) is 2.0, the key's is 0.6" in refused.output
    assert "--pgd-iters" not in refused.output  # the same value as the key's is fine
    assert "--override-key-pgd" in refused.output
    assert refused.output.count("\n") == 1 and "━" not in refused.output  # no progress line
    assert object_bodies(s3_client, b, "pgd-refused") == {}
    with pytest.raises(ConfigError, match="contradict the key"):
        run_job(
            _config(
                archive,
                secrets_dir,
                moto_server,
                "x",
                layout=None,
                manifest=str(manifest),
                pgd={"step": 0.5},
            )
        )

    # an explicit override runs with the job's budget, and says so in record and summary
    over = run_job(
        _config(
            archive,
            secrets_dir,
            moto_server,
            "pgd-override",
            layout=None,
            manifest=str(manifest),
            pgd={"eps": 1.5},
            override_key_pgd=True,
        )
    )
    expected = {"eps": {"key": KEY_PGD.eps, "job": 1.5}}
    assert over.done == 1 and over.pgd_overrides == expected
    dest = object_bodies(s3_client, b, "pgd-override")
    rec = CaseRecord.model_validate_json(dest["good_nifti_wide/record.json"])
    assert rec.pgd["eps"] == 1.5 and rec.metrics.eps == 1.5
    assert rec.pgd_overrides == expected
    assert json.loads(dest["_runs/pgd-override/summary.json"])["pgd_overrides"] == expected


@pytest.mark.timeout(300)
def test_unlearnable_key_runs_with_its_surrogate_and_refuses_another_model(
    ray_local: None,
    archive: dict[str, Any],
    secrets_dir: dict[str, Any],
    moto_server: str,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    """Issue 19: the default mode through the archive job, against its min-min surrogate."""
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices
    from medcrypt.processing import MinMinSettings, craft_surrogate, save_checkpoint

    eps = 1.0
    pgd = PGDSettings(mode="unlearnable", eps=eps, step=0.3, iters=3, precision="fp32")
    key = EncryptionKey.generate(CLASS_NAMES, combiner="none", seed=5, pgd=pgd)
    x, y = make_phantom_slices(4, size=32, seed=3)
    mm = MinMinSettings(width=4, train_steps=5, noise_steps=2, max_rounds=2)
    res = craft_surrogate(x, y, n_classes=len(CLASS_NAMES), settings=pgd, minmin=mm, seed=0)
    surrogate = tmp_path / "surrogate.pt"
    digest = save_checkpoint(surrogate, res.models[0], arch="cnn", class_names=CLASS_NAMES, width=4)
    key_path = key.with_surrogate([digest]).save(tmp_path / "unlearnable.json")
    own = {**secrets_dir, "key_path": key_path, "model": surrogate}

    # another model than the key's surrogate: refused before any work
    wrong = CliRunner().invoke(
        main, _cli_args(archive, {**own, "model": secrets_dir["model"]}, moto_server, "unl-x")
    )
    assert wrong.exit_code == 2 and "crafted with surrogate" in wrong.output
    assert not list_objects(s3_client, archive["bucket"], "unl-x")

    summary = run_job(_config(archive, own, moto_server, "unl", formats=("png",)))
    # the archive's broken cases are quarantined as in the test above (exit 3); the rest done
    assert (summary.done, summary.quarantined) == (len(archive["good"]), len(archive["broken"]))
    records = [
        json.loads(get_object(s3_client, archive["bucket"], f"unl/{k}"))
        for k in list_objects(s3_client, archive["bucket"], "unl")
        if k.endswith("/record.json")
    ]
    assert len(records) == summary.done
    for rec in records:
        assert rec["pgd"]["mode"] == "unlearnable"
        assert rec["model_hash"] == digest
        assert 0 < rec["metrics"]["l2"] <= eps + 1e-6 and rec["metrics"]["within_eps"]
