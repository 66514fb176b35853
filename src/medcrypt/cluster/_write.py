"""Stage 3 of the archive job, a CPU task: quantise, re-check eps and the per-pixel cap, encode
and write a case.

:func:`write_batch` writes the outputs, then the record (put-if-absent, last) and the ledger
marker through ``_commit``; or, for a failed case, the quarantine record.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from typing import Any

import numpy as np

from medcrypt.cluster._commit import commit, quarantine_mark, release
from medcrypt.cluster._ledger import marker_key, original_key, output_key, quarantine_key
from medcrypt.cluster._records import (
    CaseRecord,
    CaseTimings,
    OutputObject,
    ProtectionMetrics,
    QuarantineRecord,
    SliceInfo,
    software_versions,
    utc_now,
)
from medcrypt.cluster._rows import (
    _REPORTED,
    ERROR,
    PENDING,
    QUARANTINED,
    CaseState,
    StageContext,
    _fail,
    _store,
    _unpack,
)
from medcrypt.errors import JobError, ObjectExistsError
from medcrypt.storage import ObjectStore

__all__ = ["write_batch"]

logger = logging.getLogger(__name__)

#: errors worth retrying on the next run without any change to inputs or key
_TRANSIENT = ("StorageError", "TransientStorageError", "StorageAccessError", "RayError")


# -- stage 3: quantise + encode + write (CPU task) ----------------------------------------------


def _encode(fmt: str, q01: np.ndarray, slice_: Any, ctx: StageContext) -> bytes:
    from medcrypt import medical

    if fmt == "png":
        return bytes(medical.encode_png16(q01))
    if fmt == "nifti":
        return bytes(medical.encode_nifti_slice(q01, slice_))
    if fmt == "dicom":
        return bytes(
            medical.encode_dicom_slice(q01, slice_, series_description=ctx.series_description)
        )
    raise JobError(f"expected an output format in png / nifti / dicom, got {fmt!r}")


def _put_output(store: ObjectStore, key: str, fmt: str, data: bytes) -> OutputObject:
    info = store.put(key, data)
    return OutputObject(
        key=key,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        version=info.version,
    )


def _slice_info(slice_: Any, shape: tuple[int, ...]) -> SliceInfo:
    c = slice_.choice
    return SliceInfo(
        axis=int(c.axis),
        stored_index=int(c.stored_index),
        canonical_index=int(c.canonical_index),
        area_mm2=float(c.area_mm2),
        tied_indices=tuple(int(i) for i in c.tied_indices),
        rule=str(c.rule),
        fallback=None if c.fallback is None else str(c.fallback),
        world_position=tuple(float(v) for v in c.world_position),  # type: ignore[arg-type]
        shape=(int(shape[0]), int(shape[1])),
    )


def _finite_or_none(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _write_case(state: CaseState, ctx: StageContext, store: ObjectStore) -> str:
    from medcrypt.processing import (
        foreground_mask,
        key_release,
        psnr,
        quantise,
        release_json,
        ssim,
    )

    assert state.original is not None and state.protected is not None
    t0 = time.perf_counter()
    norm = str(ctx.pgd.get("norm", "l2"))  # protection modes (issue 14): l2 or linf budget
    raw_cap = ctx.pgd.get("linf_cap")  # per-pixel cap beside the budget (issue 23), or none
    cap = None if raw_cap is None else float(raw_cap)
    q = quantise(
        state.protected, state.original, eps=ctx.eps, levels=65535, norm=norm, linf_cap=cap
    )
    q01 = np.asarray(q, dtype=np.float64) / 65535.0
    diff = q01 - state.original.astype(np.float64)
    l2 = float(np.sqrt(np.sum(diff * diff)))
    linf = float(np.max(np.abs(diff))) if diff.size else 0.0
    # both re-checked on the codes as written: rounding can move a pixel half a level
    spent = l2 if norm == "l2" else linf
    if not spent <= ctx.eps * (1.0 + 1e-9):
        raise JobError(
            f"quantised image is {spent:.6f} from the original in {norm}, over the budget "
            f"eps={ctx.eps}",
            case_id=state.case_id,
            uri=state.image_uri,
        )
    if cap is not None and not linf <= cap * (1.0 + 1e-9):
        raise JobError(
            f"quantised image moves a pixel by {linf:.6f}, over the per-pixel cap linf_cap={cap}",
            case_id=state.case_id,
            uri=state.image_uri,
        )
    q01f = q01.astype(np.float32)
    # the Encryptor's mask of this very slice (bit-identical to foreground_mask's), if carried
    fg = state.foreground if state.foreground is not None else foreground_mask(state.original)
    encoded = {fmt: _encode(fmt, q01f, state.slice_, ctx) for fmt in ctx.formats}
    originals_enc = (
        {fmt: _encode(fmt, state.original, state.slice_, ctx) for fmt in ctx.formats}
        if ctx.write_originals
        else {}
    )
    metrics = ProtectionMetrics(
        l2=l2,
        linf=linf,
        psnr=float(psnr(state.original[None], q01f[None])[0]),
        ssim=float(ssim(state.original[None], q01f[None])[0]),
        # over the anatomy only (the mask the Encryptor confines the budget to)
        psnr_foreground=_finite_or_none(float(psnr(state.original, q01f, fg)[0])),
        ssim_foreground=_finite_or_none(float(ssim(state.original, q01f, fg)[0])),
        eps=ctx.eps,
        linf_cap=cap,
        within_eps=True,
        target_success=state.target_success,
        n_targets=len(state.targets),
    )
    t1 = time.perf_counter()
    outputs = tuple(
        _put_output(store, output_key(state.case_id, fmt), fmt, data)
        for fmt, data in encoded.items()
    )
    originals = tuple(
        _put_output(store, original_key(state.case_id, fmt), fmt, data)
        for fmt, data in originals_enc.items()
    )
    timings = dict(state.timings)
    timings["encode_s"] = t1 - t0
    timings["write_s"] = time.perf_counter() - t1
    released = key_release(ctx.key_fingerprint, ctx.pgd, overrides=ctx.pgd_overrides)
    record = CaseRecord(
        case_id=state.case_id,
        run_id=ctx.run_id,
        created_at=utc_now(),
        sources=tuple(state.sources),
        source_digest=state.digest,
        ledger_mark=state.mark_base,
        slice=_slice_info(state.slice_, state.original.shape),
        window=(float(state.slice_.window[0]), float(state.slice_.window[1])),
        label=state.label,
        label_name=ctx.class_names[state.label],
        label_source=state.label_source,  # type: ignore[arg-type]
        key_fingerprint=released["key_fingerprint"],
        model_hash=ctx.model_hash,
        model_arch=ctx.model_arch,
        pgd=released["pgd"],
        pgd_overrides=released.get("pgd_overrides", {}),
        compute=state.compute,
        metrics=metrics,
        outputs=outputs,
        originals=originals,
        timings=CaseTimings(**timings),
        software=software_versions(),
    )
    data = release_json(record, where=f"record of case {state.case_id!r}")
    written = {o.key: str(o.version) for o in (*outputs, *originals)}
    state.timings = timings
    return commit(state, store, data, written)


def _without_work_files(text: str) -> str:
    """``text`` with any path into medcrypt's or Ray's temp folders replaced (last line of
    defence: fetch errors already name the source URI; a quarantine record or run summary
    must never name a worker's local file or a Ray session folder)."""
    for root in {tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir())}:
        pattern = re.escape(root.rstrip("/")) + r"/(?:medcrypt-|ray/)[^\s'\"(),;:]*"
        text = re.sub(pattern, "<local temp path>", text)
    return text


def _quarantine(state: CaseState, ctx: StageContext, store: ObjectStore) -> None:
    from medcrypt.processing import release_json

    state.error_message = _without_work_files(state.error_message)
    rec = QuarantineRecord(
        case_id=state.case_id,
        run_id=ctx.run_id,
        created_at=utc_now(),
        stage=state.error_stage,  # type: ignore[arg-type]
        error_type=state.error_type,
        message=state.error_message,
        sources=tuple(state.sources),
        key_fingerprint=ctx.key_fingerprint,
        attempts=max(1, state.attempts),
        software=software_versions(),
    )
    store.put(
        quarantine_key(state.case_id),
        release_json(rec, where=f"quarantine record of case {state.case_id!r}"),
    )
    mark = quarantine_mark(state)
    if mark and state.error_type not in _TRANSIENT:
        with contextlib.suppress(ObjectExistsError):
            store.put(marker_key(state.case_id, mark), b"", if_absent=True)
    release(state, store)


_TIMING_COLUMNS = ("fetch_s", "decode_s", "pgd_s", "encode_s", "write_s")


def write_batch(batch: dict[str, np.ndarray], *, ctx: StageContext) -> dict[str, np.ndarray]:
    """Write outputs + record of each encrypted case, or its quarantine record.

    Returns small rows only (case id, final status, timings): the driver just counts them.
    """
    store = _store(ctx.dest, ctx.endpoint_url, ctx.max_pool)
    case_ids: list[str] = []
    statuses: list[str] = []
    timing_cols: dict[str, list[float]] = {c: [] for c in _TIMING_COLUMNS}
    messages: list[str] = []
    for status, state in _unpack(batch):
        final = status
        if status == PENDING:
            try:
                final = _write_case(state, ctx, store)
            except Exception as exc:
                status, state = _fail(state, "write", exc)
        if status == ERROR:
            # a quarantine write that fails past botocore's retries stops the job (exit 4);
            # the next run resumes, so nothing is lost
            _quarantine(state, ctx, store)
            final = QUARANTINED
            logger.warning("quarantined %s: %s", state.case_id, state.error_message)
        case_ids.append(state.case_id)
        statuses.append(final)
        messages.append(state.error_message if final in _REPORTED else "")
        for c in _TIMING_COLUMNS:
            timing_cols[c].append(float(state.timings.get(c, 0.0)))
    out: dict[str, np.ndarray] = {
        "case_id": np.array(case_ids, dtype=object),
        "status": np.array(statuses, dtype=object),
        "message": np.array(messages, dtype=object),
    }
    for c, vals in timing_cols.items():
        out[c] = np.array(vals, dtype=np.float64)
    return out
