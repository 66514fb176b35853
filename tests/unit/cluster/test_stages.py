"""The CPU stages run as plain functions on real local stores and real phantom cases."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcrypt.cluster._ledger import (
    claim_key,
    heartbeat_key,
    output_key,
    quarantine_key,
    record_key,
    scan_dest,
)
from medcrypt.cluster._records import CaseRecord, QuarantineRecord
from medcrypt.cluster._rows import _pack, _unpack
from medcrypt.cluster._stages import (
    CHANGED,
    CLAIMED_ELSEWHERE,
    DONE,
    ERROR,
    PENDING,
    QUARANTINED,
    QUARANTINED_BEFORE,
    SKIPPED,
    CaseState,
    StageContext,
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
        **kw,
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


def _listed(src: Path, case_id: str, dest: Path) -> CaseState:
    """The state the driver builds for a case from one listing of dest."""
    index = scan_dest(open_store(str(dest)))
    return _state(
        src,
        case_id,
        *_keys(src, case_id),
        prior_digests=index.prior_digests(case_id),
        has_record=index.has_record(case_id),
        was_quarantined=index.was_quarantined(case_id),
        case_objects=index.objects_of(case_id),
        claims=index.claims_of(case_id),
    )


def test_fetch_skips_only_what_record_and_outputs_back(archive: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    ctx = _ctx(dest)
    assert list(write_batch(_encrypted(archive, dest), ctx=ctx)["status"]) == [DONE]
    out = _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=ctx))
    assert out[0][0] == SKIPPED and out[0][1].original is None
    # another key: says so, and is redone only when asked
    other = _ctx(dest, key_fingerprint="k2")
    changed = _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=other))
    assert changed[0][0] == CHANGED and "key differ" in changed[0][1].error_message
    redo = _ctx(dest, key_fingerprint="k2", redo="changed", run_id="run-redo")
    assert _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=redo))[0][0] == PENDING
    open_store(str(dest)).delete(claim_key("p0", 0))  # the redo's claim, as if it had finished
    # an output deleted from dest: the case is redone, not skipped
    open_store(str(dest)).delete(output_key("p0", "png"))
    again = _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=ctx))
    assert again[0][0] == PENDING and again[0][1].original is not None


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
    assert all(o.version == store.stat(o.key).version for o in rec.outputs)
    (marker,) = scan_dest(store).prior_digests("p0")
    assert marker.startswith(rec.ledger_mark + ".")
    # a second writer with the same settings finds the record: nothing replaced
    before = store.get(record_key("p0"))
    again = write_batch(batch, ctx=_ctx(dest, run_id="run-2"))
    assert list(again["status"]) == [SKIPPED]
    assert store.get(record_key("p0")) == before
    assert scan_dest(store).prior_digests("p0") == [marker]


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
    rerun = _listed(archive, "bad", dest)
    fetched = _unpack(fetch_batch(_batch([rerun]), ctx=ctx))
    assert q.sources  # stat worked, so the digest is known and a lasting marker was written
    assert fetched[0][0] == QUARANTINED_BEFORE and fetched[0][1].original is None
    forced = _unpack(fetch_batch(_batch([rerun]), ctx=_ctx(dest, redo="quarantined")))
    assert forced[0][0] == ERROR
    # other settings may well fix it (e.g. a slice fallback): tried again without asking
    other = _unpack(fetch_batch(_batch([rerun]), ctx=_ctx(dest, slice_fallback="largest_brain")))
    assert other[0][0] == ERROR


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


def test_a_live_claim_keeps_a_case_and_a_stale_one_is_taken_over(
    archive: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    store = open_store(str(dest))
    store.put(claim_key("p0", 0), json.dumps({"run_id": "other"}).encode())
    store.put(heartbeat_key("other"), b"{}")  # the other run is alive
    ctx = _ctx(dest, claim_lease_s=60.0)
    out = _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=ctx))
    assert out[0][0] == CLAIMED_ELSEWHERE and "other" in out[0][1].error_message
    # the other run was killed: its heartbeat stopped two minutes ago
    old = time.time() - 120
    os.utime(dest / heartbeat_key("other"), (old, old))
    taken = _unpack(fetch_batch(_batch([_listed(archive, "p0", dest)]), ctx=ctx))
    assert taken[0][0] == PENDING and taken[0][1].claim_gen == 1
    assert json.loads(store.get(claim_key("p0", 1)))["run_id"] == "run-1"
    # finishing the case gives the claim back, with the stale generation it superseded
    st = taken[0][1]
    st.protected, st.label, st.targets = st.original, 1, (2,)
    assert list(write_batch(_pack([(PENDING, st)]), ctx=ctx)["status"]) == [DONE]
    assert not store.exists(claim_key("p0", 0)) and not store.exists(claim_key("p0", 1))


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
    from medcrypt.cluster._rows import _pack

    ctx = _ctx(dest, eps=eps, pgd={"eps": eps, "iters": 1, "norm": "linf"})
    out = write_batch(_pack(rows), ctx=ctx)
    assert list(out["status"]) == [DONE]
    rec = CaseRecord.model_validate_json(open_store(str(dest)).get(record_key("p0")))
    # within the Linf budget, and not shrunk to an L2 ball of radius eps (L2 here is ~0.5)
    assert 0.01 < rec.metrics.linf <= eps and rec.metrics.l2 > 10 * eps
    assert rec.pgd["norm"] == "linf"
    assert rec.metrics.psnr_foreground is not None and rec.metrics.ssim_foreground is not None


def test_write_measures_the_foreground_on_the_encryptors_mask(
    archive: Path, tmp_path: Path
) -> None:
    """The write stage reuses the mask the Encryptor carried (issue 24) instead of computing
    it again; without one it computes foreground_mask of the original, as before."""
    from medcrypt.processing import dequantise, foreground_mask, psnr, quantise

    records = []
    for name, carried in (("own", None), ("carried", "left half")):
        dest = tmp_path / name
        rows = _unpack(_encrypted(archive, dest))
        st = rows[0][1]
        assert st.original is not None and st.protected is not None
        if carried:
            st.foreground = np.zeros(st.original.shape, dtype=bool)
            st.foreground[:, : st.original.shape[1] // 2] = True
        assert list(write_batch(_pack(rows), ctx=_ctx(dest))["status"]) == [DONE]
        rec = CaseRecord.model_validate_json(open_store(str(dest)).get(record_key("p0")))
        q = dequantise(quantise(st.protected, st.original, eps=EPS))
        mask = foreground_mask(st.original) if st.foreground is None else st.foreground
        want = float(psnr(st.original, q, mask)[0])
        assert rec.metrics.psnr_foreground == pytest.approx(want, abs=1e-6)
        records.append(rec.metrics.psnr_foreground)
    assert records[0] != pytest.approx(records[1], abs=1e-3)  # the carried mask was used


CAP = 0.01


def _over_cap(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encrypted case with one pixel moved just past the cap (by a third of a 16-bit
    level: rounding could carry it over)."""
    (status, st), *_ = _unpack(batch)
    assert st.original is not None and st.protected is not None
    d = np.clip(st.protected - st.original, -CAP, CAP)
    d.flat[int(np.argmax(st.original))] = -(CAP + 0.33 / 65535)
    st.protected = np.clip(st.original + d, 0, 1).astype(np.float32)
    return _pack([(status, st)])


def test_write_keeps_the_per_pixel_cap_after_quantisation_and_records_both(
    archive: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    ctx = _ctx(dest, pgd={"eps": EPS, "iters": 1, "linf_cap": CAP})
    out = write_batch(_over_cap(_encrypted(archive, dest)), ctx=ctx)
    assert list(out["status"]) == [DONE]
    rec = CaseRecord.model_validate_json(open_store(str(dest)).get(record_key("p0")))
    assert rec.metrics.linf_cap == CAP and rec.metrics.within_eps
    assert 0 < rec.metrics.l2 <= EPS and 0 < rec.metrics.linf <= CAP
    png = decode_png16(open_store(str(dest)).get(output_key("p0", "png")))
    assert rec.metrics.linf == pytest.approx(CAP, abs=2 / 65535)  # kept, not shrunk away
    assert png.shape == (32, 32)


def test_write_refuses_a_case_over_the_cap_or_the_budget(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medcrypt.processing as processing

    def plain(p: np.ndarray, o: np.ndarray, **_: Any) -> np.ndarray:  # rounding, no re-check
        return np.rint(np.clip(p, 0, 1) * 65535).astype(np.uint16)

    monkeypatch.setattr(processing, "quantise", plain)
    for name, pgd, eps, needle in (
        ("cap", {"eps": EPS, "iters": 1, "linf_cap": CAP}, EPS, "over the per-pixel cap"),
        ("eps", {"eps": 0.001, "iters": 1}, 0.001, "over the budget"),
    ):
        dest = tmp_path / name
        ctx = _ctx(dest, pgd=pgd, eps=eps)
        out = write_batch(_over_cap(_encrypted(archive, dest)), ctx=ctx)
        assert list(out["status"]) == [QUARANTINED], name
        store = open_store(str(dest))
        q = QuarantineRecord.model_validate_json(store.get(quarantine_key("p0")))
        assert needle in q.message and not store.exists(record_key("p0"))
