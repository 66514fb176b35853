"""The CPU stages run as plain functions on real local stores and real phantom cases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcrypt.cluster._ledger import marker_key, output_key, quarantine_key, record_key, scan_dest
from medcrypt.cluster._records import CaseRecord, QuarantineRecord
from medcrypt.cluster._stages import (
    DONE,
    ERROR,
    PENDING,
    QUARANTINED,
    SKIPPED,
    CaseState,
    StageContext,
    _unpack,
    fetch_batch,
    initial_row,
    write_batch,
)
from medcrypt.medical import decode_png16, write_phantom_case
from medcrypt.storage import open_store

EPS = 0.5


def _ctx(dest: Path, **kw: Any) -> StageContext:
    base: dict[str, Any] = dict(
        run_id="run-1",
        dest=str(dest),
        endpoint_url=None,
        max_pool=4,
        formats=("png", "nifti"),
        write_originals=False,
        eps=EPS,
        key_fingerprint="mk1:test",
        model_hash="sha256:x",
        model_arch="resnet18",
        class_names=("a", "b", "c", "d", "e"),
        pgd={"eps": EPS, "iters": 1},
        tumour_labels=None,
        slice_fallback="error",
        series_description="test",
    )
    base.update(kw)
    return StageContext(**base)


def _state(src: Path, case_id: str, image: str, mask: str, **kw: Any) -> CaseState:
    return CaseState(
        case_id=case_id,
        image_uri=f"{src}/{image}",
        mask_uri=f"{src}/{mask}",
        image_root=str(src),
        image_key=image,
        mask_root=str(src),
        mask_key=mask,
        label_given=kw.pop("label_given", 1),
        prior_digests=kw.pop("prior_digests", []),
        has_record=kw.pop("has_record", False),
        was_quarantined=kw.pop("was_quarantined", False),
    )


def _batch(states: list[CaseState]) -> dict[str, np.ndarray]:
    rows = [initial_row(s) for s in states]
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    write_phantom_case(src / "p0", label=1, seed=3, shape=(32, 32, 8))
    write_phantom_case(src / "p1", label=2, seed=4, fmt="dicom", shape=(32, 32, 8))
    (src / "bad").mkdir()
    (src / "bad" / "image.nii.gz").write_bytes(b"not a nifti file")
    (src / "bad" / "mask.nii.gz").write_bytes(b"not a nifti file")
    return src


def _keys(src: Path, case: str) -> tuple[str, str]:
    files = sorted(p.relative_to(src).as_posix() for p in (src / case).iterdir())
    mask = next(f for f in files if "mask" in f)
    image = next(f for f in files if f != mask)
    if (src / image).is_dir():
        image += "/"
    return image, mask


def test_fetch_decodes_good_cases_and_turns_bad_ones_into_error_rows(
    archive: Path, tmp_path: Path
) -> None:
    states = [_state(archive, c, *_keys(archive, c)) for c in ("p0", "p1", "bad")]
    out = _unpack(fetch_batch(_batch(states), ctx=_ctx(tmp_path / "dest")))
    assert [s for s, _ in out] == [PENDING, PENDING, ERROR]
    for _, st in out[:2]:
        assert st.original is not None and st.original.shape == (32, 32)
        assert st.original.min() >= 0.0 and st.original.max() <= 1.0
        assert {s.role for s in st.sources} == {"image", "mask"} and len(st.digest) == 32
    assert out[1][1].sources[0].version.startswith("series:")  # DICOM folder versioned
    bad = out[2][1]
    assert bad.error_stage == "fetch" and "bad" in bad.error_message
    assert "image.nii.gz" in bad.error_message  # names the file


def test_fetch_skips_a_case_whose_digest_is_in_the_ledger(archive: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "dest")
    first = _unpack(fetch_batch(_batch([_state(archive, "p0", *_keys(archive, "p0"))]), ctx=ctx))
    digest = first[0][1].digest
    again = _state(archive, "p0", *_keys(archive, "p0"), prior_digests=[digest])
    out = _unpack(fetch_batch(_batch([again]), ctx=ctx))
    assert out[0][0] == SKIPPED and out[0][1].original is None
    other_key = _unpack(fetch_batch(_batch([again]), ctx=_ctx(tmp_path, key_fingerprint="k2")))
    assert other_key[0][0] == PENDING  # another key: not done


def _encrypted(archive: Path, dest: Path, **kw: Any) -> dict[str, np.ndarray]:
    """Fetch p0 and perturb it within eps (what the encrypt stage would hand on)."""
    out = _unpack(
        fetch_batch(_batch([_state(archive, "p0", *_keys(archive, "p0"), **kw)]), ctx=_ctx(dest))
    )
    status, st = out[0]
    assert st.original is not None
    rng = np.random.default_rng(0)
    noise = rng.normal(size=st.original.shape)
    st.protected = np.clip(st.original + 0.8 * EPS * noise / np.linalg.norm(noise), 0, 1).astype(
        np.float32
    )
    st.label, st.label_source, st.targets = 1, "given", (2, 3)
    from medcrypt.cluster._stages import _pack

    return _pack([(status, st)])


def test_write_stores_outputs_record_and_marker_and_second_writer_skips(
    archive: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    batch = _encrypted(archive, dest)
    out = write_batch(batch, ctx=_ctx(dest))
    assert list(out["status"]) == [DONE]
    store = open_store(str(dest))
    rec = CaseRecord.model_validate_json(store.get(record_key("p0")))
    assert rec.metrics.l2 <= EPS and rec.metrics.within_eps
    # the key's class mapping (targets 2, 3 for label 1) is secret: only the count is recorded
    assert rec.metrics.n_targets == 2
    raw = json.loads(store.get(record_key("p0")))
    assert "targets" not in raw["metrics"]
    assert "combiner" not in raw
    png = decode_png16(store.get(output_key("p0", "png")))
    assert png.shape == (32, 32)
    assert {o.key for o in rec.outputs} == {output_key("p0", "png"), output_key("p0", "nifti")}
    assert store.exists(marker_key("p0", rec.source_digest))
    # a concurrent run with the same inputs and key finds the record: nothing replaced
    before = store.get(record_key("p0"))
    again = write_batch(batch, ctx=_ctx(dest, run_id="run-2"))
    assert list(again["status"]) == [SKIPPED]
    assert store.get(record_key("p0")) == before
    assert scan_dest(store).prior_digests("p0") == [rec.source_digest]


def test_write_quarantines_error_rows_and_lasting_ones_are_not_retried(
    archive: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    ctx = _ctx(dest)
    bad = _state(archive, "bad", *_keys(archive, "bad"))
    out = write_batch(fetch_batch(_batch([bad]), ctx=ctx), ctx=ctx)
    assert list(out["status"]) == [QUARANTINED]
    store = open_store(str(dest))
    q = QuarantineRecord.model_validate_json(store.get(quarantine_key("bad")))
    assert q.stage == "fetch" and q.error_type and "bad" in q.message
    assert not store.exists(record_key("bad"))
    # the same corrupt bytes and key next night: quarantined again without decoding
    index = scan_dest(store)
    assert index.was_quarantined("bad")
    rerun = _state(archive, "bad", *_keys(archive, "bad"), prior_digests=index.prior_digests("bad"))
    fetched = _unpack(fetch_batch(_batch([rerun]), ctx=ctx))
    assert q.sources  # stat worked, so the digest is known and a lasting marker was written
    assert fetched[0][0] == QUARANTINED and fetched[0][1].original is None
    forced = _unpack(fetch_batch(_batch([rerun]), ctx=_ctx(dest, retry_quarantined=True)))
    assert forced[0][0] == ERROR


def test_write_rejects_an_image_over_the_budget(archive: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    batch = _encrypted(archive, dest)
    out = write_batch(batch, ctx=_ctx(dest, eps=1e-6))  # budget far below the perturbation
    # quantise shrinks it back inside the budget, or the re-check quarantines it: never over
    store = open_store(str(dest))
    if list(out["status"]) == [DONE]:
        rec = json.loads(store.get(record_key("p0")))
        assert rec["metrics"]["l2"] <= 1e-6
    else:
        assert list(out["status"]) == [QUARANTINED]
        assert not store.exists(record_key("p0")) and store.exists(quarantine_key("p0"))


def test_lost_race_with_different_bytes_keeps_record_and_outputs_consistent(
    archive: Path, tmp_path: Path
) -> None:
    """A concurrent winner whose (non-bit-exact) outputs we overwrote: our record replaces it."""
    dest = tmp_path / "dest"
    batch = _encrypted(archive, dest)
    write_batch(batch, ctx=_ctx(dest))
    store = open_store(str(dest))
    winner = json.loads(store.get(record_key("p0")))
    for o in winner["outputs"]:
        o["sha256"] = "0" * 64  # the winner's bytes differed from what is stored now
    winner["run_id"] = "winner"
    store.put(record_key("p0"), json.dumps(winner).encode())
    out = write_batch(batch, ctx=_ctx(dest, run_id="loser"))
    assert list(out["status"]) == [DONE]
    rec = CaseRecord.model_validate_json(store.get(record_key("p0")))
    assert rec.run_id == "loser"
    for o in rec.outputs:
        assert hashlib.sha256(store.get(o.key)).hexdigest() == o.sha256


def test_write_keeps_a_linf_budget_and_records_foreground_metrics(
    archive: Path, tmp_path: Path
) -> None:
    """A Linf release (protection modes, issue 14) is checked against its own norm."""
    dest = tmp_path / "dest"
    eps = 0.02
    rows = _unpack(_encrypted(archive, dest))
    st = rows[0][1]
    assert st.original is not None
    sign = np.random.default_rng(1).choice([-1.0, 1.0], size=st.original.shape)
    st.protected = np.clip(st.original + 0.9 * eps * sign, 0, 1).astype(np.float32)
    from medcrypt.cluster._stages import _pack

    ctx = _ctx(dest, eps=eps, pgd={"eps": eps, "iters": 1, "norm": "linf"})
    out = write_batch(_pack(rows), ctx=ctx)
    assert list(out["status"]) == [DONE]
    rec = CaseRecord.model_validate_json(open_store(str(dest)).get(record_key("p0")))
    # within the Linf budget, and not shrunk to an L2 ball of radius eps (L2 here is ~0.5)
    assert 0.01 < rec.metrics.linf <= eps and rec.metrics.l2 > 10 * eps
    assert rec.pgd["norm"] == "linf"
    assert rec.metrics.psnr_foreground is not None and rec.metrics.ssim_foreground is not None
