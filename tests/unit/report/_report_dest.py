"""A small archive-job dest written through a real ObjectStore, records built by the job's models.

Used by the report tests (local folder here, moto S3 in tests/integration/test_report_s3.py).
"""

from __future__ import annotations

import numpy as np

from medcrypt.cluster import CaseRecord, QuarantineRecord, RunSummary
from medcrypt.medical import encode_png16
from medcrypt.storage import ObjectStore

SOFTWARE = {"python": "3.11.7", "medcrypt": "0.1.0", "numpy": "2.4.6"}
FINGERPRINT = "mk1:0123456789abcdef"
MODEL = "sha256:" + "ab" * 32


def summary(run_id: str, *, started: str, done: int, quarantined: int) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        source="/archive",
        dest="/dest",
        started_at=started,
        finished_at=started,
        total=done + quarantined,
        done=done,
        skipped=0,
        quarantined=quarantined,
        failed=0,
        wall_s=12.345,
        cases_per_s=(done + quarantined) / 12.345,
        stage_totals={
            "fetch_s": 0.5,
            "decode_s": 1.25,
            "pgd_s": 3.0,
            "encode_s": 0.1,
            "write_s": 0.2,
        },
        key_fingerprint=FINGERPRINT,
        model_hash=MODEL,
    )


def case_record(case_id: str, run_id: str, psnr: float, *, fg: dict | None = None) -> CaseRecord:
    metrics: dict = {
        "l2": 0.8,
        "linf": 0.09,
        "psnr": psnr,
        "ssim": 0.95,
        "eps": 1.0,
        "within_eps": True,
        "target_success": 1.0,
        "n_targets": 2,
    }
    data = {
        "case_id": case_id,
        "run_id": run_id,
        "created_at": "2026-12-01T00:00:00+00:00",
        "sources": [{"role": "image", "uri": f"/archive/{case_id}/t1c.nii.gz", "version": "1"}],
        "source_digest": "0" * 32,
        "slice": {
            "axis": 2,
            "stored_index": 7,
            "canonical_index": 7,
            "area_mm2": 123.5,
            "tied_indices": [7, 8],
            "rule": "largest",
            "fallback": None,
            "world_position": [0.0, 0.0, 7.0],
            "shape": [16, 16],
        },
        "window": [0.0, 1.0],
        "label": 1,
        "label_name": "chordoma",
        "label_source": "given",
        "key_fingerprint": FINGERPRINT,
        "model_hash": MODEL,
        "model_arch": "resnet18",
        "pgd": {"eps": 1.0, "step": 0.1, "iters": 20},
        "metrics": metrics,
        "outputs": [{"key": f"{case_id}/encrypted.png", "format": "png", "sha256": "x", "size": 1}],
        "originals": [
            {"key": f"_originals/{case_id}/original.png", "format": "png", "sha256": "y", "size": 1}
        ],
        "timings": {
            "fetch_s": 0.1,
            "decode_s": 0.2,
            "pgd_s": 0.5,
            "encode_s": 0.01,
            "write_s": 0.02,
        },
        "software": SOFTWARE,
    }
    rec = CaseRecord.model_validate(data)
    if fg is not None:  # what another team's foreground metrics may add: kept as raw JSON
        rec_json = rec.model_dump(mode="json")
        rec_json["metrics"].update(fg)
        return rec_json  # type: ignore[return-value]
    return rec


def write_case(store: ObjectStore, rec: CaseRecord | dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    original = rng.random((16, 16)).astype(np.float32)
    protected = np.clip(original + rng.normal(0, 0.01, original.shape), 0, 1).astype(np.float32)
    data = rec if isinstance(rec, dict) else rec.model_dump(mode="json")
    import json

    cid = data["case_id"]
    store.put(f"{cid}/record.json", json.dumps(data).encode())
    store.put(f"{cid}/encrypted.png", encode_png16(protected))
    store.put(f"_originals/{cid}/original.png", encode_png16(original))


def quarantine(
    case_id: str,
    run_id: str,
    message: str,
    *,
    stage: str = "fetch",
    error_type: str = "ImageFormatError",
) -> QuarantineRecord:
    return QuarantineRecord(
        case_id=case_id,
        run_id=run_id,
        created_at="2026-12-01T00:00:00+00:00",
        stage=stage,
        error_type=error_type,
        message=message,  # type: ignore[arg-type]
        key_fingerprint=FINGERPRINT,
        software=SOFTWARE,
    )


def write_dest(store: ObjectStore) -> None:
    """Two runs: an old one (1 case) and the latest (3 cases, 3 quarantined of 2 kinds)."""
    old, new = "20261130T000000Z-old", "20261201T000000Z-new"
    store.put(
        f"_runs/{old}/summary.json",
        summary(old, started="2026-11-30T00:00:00+00:00", done=1, quarantined=0)
        .model_dump_json()
        .encode(),
    )
    store.put(
        f"_runs/{new}/summary.json",
        summary(new, started="2026-12-01T00:00:00+00:00", done=3, quarantined=3)
        .model_dump_json()
        .encode(),
    )
    write_case(store, case_record("case_old", old, 41.0), 0)
    write_case(store, case_record("case_a", new, 38.5), 1)
    write_case(
        store,
        case_record("case_b", new, 36.25, fg={"psnr_foreground": 33.75, "ssim_foreground": 0.9}),
        2,
    )
    write_case(store, case_record("case_c", new, 40.0), 3)
    for cid, msg, kind in (
        ("bad_1", "case 'bad_1', file 'x.nii.gz': truncated <b>bold</b>", "ImageFormatError"),
        ("bad_2", "case 'bad_2', file 'y.nii.gz': truncated", "ImageFormatError"),
        ("bad_3", "case 'bad_3': mask has no tumour voxels", "SliceSelectionError"),
    ):
        store.put(
            f"_quarantine/{cid}.json",
            quarantine(cid, new, msg, error_type=kind).model_dump_json().encode(),
        )
