"""The three stages of the archive job, as Ray Data batch functions.

Every row carries ``case_id``, ``status`` and ``payload`` (the pickled :class:`CaseState`). A
stage works only on ``pending`` rows and passes every other row through untouched, and every
error is caught *per case* and turned into an ``error`` row naming the stage, so one bad case
never takes its batch-mates down and Ray Data never has to drop a block.

- :func:`fetch_batch` (CPU task): stat the case's sources, skip it if the ledger says it is
  done for these versions and this key, else download to a temp dir, choose the slice.
- :class:`EncryptActor` (GPU actor): model and key loaded once per actor; batched PGD +
  combiner per image shape. Crash accounting through :class:`AttemptCounter` (see there).
- :func:`write_batch` (CPU task): quantise and re-check eps, encode, write outputs, then the
  record (put-if-absent, last), the ledger marker; or the quarantine record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from medcrypt.cluster._ledger import (
    marker_key,
    original_key,
    output_key,
    quarantine_key,
    record_key,
)
from medcrypt.cluster._records import (
    CaseRecord,
    CaseTimings,
    OutputObject,
    ProtectionMetrics,
    QuarantineRecord,
    SliceInfo,
    SourceObject,
    software_versions,
    source_digest,
    utc_now,
)
from medcrypt.errors import (
    JobError,
    MedcryptError,
    ObjectExistsError,
    ObjectNotFoundError,
)
from medcrypt.storage import ObjectInfo, ObjectStore, open_store

__all__ = [
    "AttemptCounter",
    "CaseState",
    "EncryptActor",
    "StageContext",
    "fetch_batch",
    "write_batch",
]

logger = logging.getLogger(__name__)

PENDING = "pending"
SKIPPED = "skipped"
ERROR = "error"
DONE = "done"
QUARANTINED = "quarantined"

#: suffix of a ledger marker that says "quarantined for a lasting reason with this digest"
QUARANTINE_MARK = ".quarantined"
#: errors worth retrying on the next run without any change to inputs or key
_TRANSIENT = ("StorageError", "TransientStorageError", "StorageAccessError", "RayError")

#: Fault injection for the integration tests: comma-separated case ids whose encryption kills
#: the worker process (as a segfaulting CUDA kernel would). Unset in production.
FAULT_KILL_ENV = "MEDCRYPT_FAULT_KILL_CASES"

#: how many times one case may be in flight, alone, when its actor died before giving up
MAX_SOLO_CRASHES = 2


@dataclasses.dataclass
class CaseState:
    """Everything one case carries between stages (pickled into the ``payload`` column)."""

    case_id: str
    image_uri: str
    mask_uri: str
    image_root: str
    image_key: str
    mask_root: str
    mask_key: str
    label_given: int | None
    prior_digests: list[str]
    has_record: bool
    was_quarantined: bool
    sources: list[SourceObject] = dataclasses.field(default_factory=list)
    digest: str = ""
    slice_: Any = None  # medcrypt.medical.Slice
    original: np.ndarray | None = None
    protected: np.ndarray | None = None
    label: int = -1
    label_source: str = "given"
    target_success: float = 0.0
    targets: tuple[int, ...] = ()
    compute: dict[str, str | bool] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    error_stage: str = ""
    error_type: str = ""
    error_message: str = ""
    attempts: int = 1


@dataclasses.dataclass(frozen=True)
class StageContext:
    """Run-wide settings every CPU stage needs (small, picklable, no secrets)."""

    run_id: str
    dest: str
    endpoint_url: str | None
    max_pool: int
    formats: tuple[str, ...]
    write_originals: bool
    eps: float
    key_fingerprint: str
    model_hash: str
    model_arch: str
    class_names: tuple[str, ...]
    pgd: Mapping[str, Any]
    tumour_labels: tuple[int, ...] | None
    slice_fallback: str
    series_description: str
    retry_quarantined: bool = False


# -- rows <-> batches -------------------------------------------------------------------------


def _unpack(batch: Mapping[str, Any]) -> list[tuple[str, CaseState]]:
    statuses = list(batch["status"])
    payloads = list(batch["payload"])
    return [(str(s), pickle.loads(p)) for s, p in zip(statuses, payloads, strict=True)]


def _pack(rows: Sequence[tuple[str, CaseState]]) -> dict[str, np.ndarray]:
    case_ids = np.array([st.case_id for _, st in rows], dtype=object)
    statuses = np.array([s for s, _ in rows], dtype=object)
    payloads = np.empty(len(rows), dtype=object)
    for i, (_, st) in enumerate(rows):
        payloads[i] = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
    return {"case_id": case_ids, "status": statuses, "payload": payloads}


def initial_row(state: CaseState) -> dict[str, Any]:
    """The row a manifest entry starts as."""
    return {
        "case_id": state.case_id,
        "status": PENDING,
        "payload": pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),
    }


def _fail(state: CaseState, stage: str, exc: BaseException) -> tuple[str, CaseState]:
    state.error_stage = stage
    state.error_type = type(exc).__name__
    text = str(exc)
    if not isinstance(exc, MedcryptError) or getattr(exc, "case_id", None) is None:
        text = f"case {state.case_id!r}: {text}"
    state.error_message = text
    state.original = None
    state.protected = None
    state.slice_ = None
    logger.debug("case %s failed in %s: %s", state.case_id, stage, text)
    return ERROR, state


# -- storage helpers --------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _store(root: str, endpoint_url: str | None, max_pool: int = 32) -> ObjectStore:
    """One store (and so one boto3 client and connection pool) per root per worker process."""
    return open_store(root, endpoint_url=endpoint_url, max_pool=max_pool)


def _stat_source(
    store: ObjectStore, key: str, *, role: str, uri: str, case_id: str
) -> tuple[SourceObject, list[ObjectInfo] | None]:
    """Version of one input; a missing object that is a folder is a DICOM series."""
    try:
        if key.endswith("/"):
            raise ObjectNotFoundError("a series folder", operation="stat", uri=uri)
        info = store.stat(key)
        return SourceObject(role=role, uri=uri, version=info.version), None  # type: ignore[arg-type]
    except ObjectNotFoundError as exc:
        files = list(store.list(key.rstrip("/") + "/"))
        if not files:
            raise ObjectNotFoundError(
                f"{role}: expected an object or a DICOM series folder, found neither",
                operation="stat",
                case_id=case_id,
                uri=uri,
            ) from exc
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.key}\0{f.version}\n".encode())
        version = f"series:{len(files)}:{h.hexdigest()[:32]}"
        return SourceObject(role=role, uri=uri, version=version), files  # type: ignore[arg-type]


def _download(
    store: ObjectStore, key: str, files: list[ObjectInfo] | None, into: Path, role: str
) -> Path:
    if files is None:
        name = key.rsplit("/", 1)[-1] or role
        target = into / role / name
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(key, target)
        return target
    folder = into / role / "series"
    base = key.rstrip("/") + "/"
    for f in files:
        rel = f.key[len(base) :]
        target = folder.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(f.key, target)
    return folder


def _already_done(state: CaseState, ctx: StageContext) -> bool:
    """The ledger test: a marker for this digest, or (no marker) a record with this digest."""
    if state.digest in state.prior_digests:
        return True
    if state.has_record and not state.prior_digests:
        # record written but its marker not (driver killed in between): read this one record
        try:
            data = json.loads(
                _store(ctx.dest, ctx.endpoint_url, ctx.max_pool).get(record_key(state.case_id))
            )
        except (ObjectNotFoundError, ValueError):
            return False
        return bool(data.get("source_digest") == state.digest)
    return False


# -- stage 1: fetch + decode (CPU task) --------------------------------------------------------


def fetch_batch(batch: dict[str, np.ndarray], *, ctx: StageContext) -> dict[str, np.ndarray]:
    """Stat, ledger-check, download and slice every pending case of the batch."""
    from medcrypt.medical import load_case_slice

    out: list[tuple[str, CaseState]] = []
    for status, state in _unpack(batch):
        if status != PENDING:
            out.append((status, state))
            continue
        try:
            t0 = time.perf_counter()
            img_store, img_key = (
                _store(state.image_root, ctx.endpoint_url, ctx.max_pool),
                state.image_key,
            )
            msk_store, msk_key = (
                _store(state.mask_root, ctx.endpoint_url, ctx.max_pool),
                state.mask_key,
            )
            img_src, img_files = _stat_source(
                img_store, img_key, role="image", uri=state.image_uri, case_id=state.case_id
            )
            msk_src, msk_files = _stat_source(
                msk_store, msk_key, role="mask", uri=state.mask_uri, case_id=state.case_id
            )
            state.sources = [img_src, msk_src]
            state.digest = source_digest(state.sources, ctx.key_fingerprint)
            if _already_done(state, ctx):
                out.append((SKIPPED, state))
                continue
            if not ctx.retry_quarantined and state.digest + QUARANTINE_MARK in state.prior_digests:
                # failed for a lasting reason with these very inputs and key: do not rerun it
                # nightly (a poison case would kill workers again); --retry-quarantined forces
                out.append((QUARANTINED, state))
                continue
            with tempfile.TemporaryDirectory(prefix="medcrypt-fetch-") as tmp:
                image_path = _download(img_store, img_key, img_files, Path(tmp), "image")
                mask_path = _download(msk_store, msk_key, msk_files, Path(tmp), "mask")
                t1 = time.perf_counter()
                slice_ = load_case_slice(
                    image_path,
                    mask_path,
                    case_id=state.case_id,
                    tumour_labels=ctx.tumour_labels,
                    fallback=ctx.slice_fallback,  # type: ignore[arg-type]
                )
            arr = np.asarray(slice_.array, dtype=np.float32)
            if arr.ndim != 2 or not np.isfinite(arr).all():
                raise JobError(
                    f"expected a finite 2D slice, got shape {arr.shape}",
                    case_id=state.case_id,
                    uri=state.image_uri,
                )
            state.original = np.clip(arr, 0.0, 1.0)
            state.slice_ = slice_
            t2 = time.perf_counter()
            state.timings["fetch_s"] = t1 - t0
            state.timings["decode_s"] = t2 - t1
            out.append((PENDING, state))
        except Exception as exc:  # per case: any failure becomes a quarantine row
            out.append(_fail(state, "fetch", exc))
    return _pack(out)


# -- stage 2: PGD + combiner (GPU actor) --------------------------------------------------------


@ray.remote(num_cpus=0)
class AttemptCounter:
    """Counts, per case, how often the encrypt stage started it, so a poison case ends.

    Ray Data restarts a dead pool actor and retries its batch. The first time a batch runs,
    all its cases run together. When a batch comes back (its actor died), each of its cases
    runs alone, bracketed by :meth:`begin_solo` / :meth:`end_solo`; a case whose solo run
    was started :data:`MAX_SOLO_CRASHES` times without ending is the one killing the actor,
    and is quarantined instead of run again. Lives on the driver's node for one run.
    """

    def __init__(self) -> None:
        self._batch: dict[str, int] = {}
        self._solo_open: dict[str, int] = {}

    def begin_batch(self, case_ids: list[str]) -> list[int]:
        prior = [self._batch.get(c, 0) for c in case_ids]
        for c in case_ids:
            self._batch[c] = self._batch.get(c, 0) + 1
        return prior

    def begin_solo(self, case_id: str) -> int:
        prior = self._solo_open.get(case_id, 0)
        self._solo_open[case_id] = prior + 1
        return prior

    def end_solo(self, case_id: str) -> None:
        self._solo_open[case_id] = max(0, self._solo_open.get(case_id, 0) - 1)


class EncryptActor:
    """Ray Data callable class: model and key loaded once per actor, batched PGD per call."""

    def __init__(
        self,
        *,
        model_blob: Any,
        key_blob: Any,
        pgd: Mapping[str, Any] | None,
        device: str,
        counter: Any,
        wait_s: float = 120.0,
    ) -> None:
        from medcrypt.processing import Encryptor, PGDSettings, load_checkpoint

        if isinstance(model_blob, ray.ObjectRef):
            model_blob = ray.get(model_blob, timeout=wait_s)
        if isinstance(key_blob, ray.ObjectRef):
            key_blob = ray.get(key_blob, timeout=wait_s)
        with tempfile.TemporaryDirectory(prefix="medcrypt-model-") as tmp:
            path = Path(tmp) / "model.pt"
            path.write_bytes(model_blob)
            self.loaded = load_checkpoint(path, map_location="cpu")
        self.key = key_blob
        self.encryptor = Encryptor(
            self.loaded.model,
            self.key,
            device=device,
            settings=PGDSettings(**dict(pgd)) if pgd else None,
        )
        self.device = device
        self.counter = counter
        self.wait_s = wait_s

    def _encrypt_group(self, states: list[CaseState]) -> None:
        """Encrypt cases of one image shape in one call; raises on any failure."""
        doomed = os.environ.get(FAULT_KILL_ENV)
        if doomed and set(doomed.split(",")) & {st.case_id for st in states}:
            logger.error("fault injection: killing this worker on %s", doomed)
            os._exit(137)
        images = np.stack([st.original for st in states if st.original is not None])
        missing = [i for i, st in enumerate(states) if st.label_given is None]
        predicted = (
            self.encryptor.predict(images[missing]) if missing else np.zeros(0, dtype=np.int64)
        )
        labels: list[int] = []
        it: Iterator[int] = iter(predicted.tolist())
        for st in states:
            if st.label_given is None:
                st.label, st.label_source = int(next(it)), "predicted"
            else:
                st.label, st.label_source = int(st.label_given), "given"
            labels.append(st.label)
        t0 = time.perf_counter()
        result = self.encryptor.encrypt(images, labels)
        share = (time.perf_counter() - t0) / len(states)
        for i, st in enumerate(states):
            st.protected = np.asarray(result.images[i], dtype=np.float32)
            st.target_success = float(np.asarray(result.target_success)[i])
            st.targets = tuple(int(t) for t in result.targets[i])
            st.compute = dict(self.encryptor.compute)
            st.timings["pgd_s"] = share

    def _solo(self, status: str, state: CaseState) -> tuple[str, CaseState]:
        prior = ray.get(self.counter.begin_solo.remote(state.case_id), timeout=self.wait_s)
        if prior >= MAX_SOLO_CRASHES:
            state.attempts = prior + 1
            return _fail(
                state,
                "encrypt",
                JobError(
                    f"the encrypt worker process died {prior} times while this case was "
                    "running alone; quarantined instead of retried",
                    case_id=state.case_id,
                    uri=state.image_uri,
                ),
            )
        try:
            self._encrypt_group([state])
            result = (status, state)
        except Exception as exc:
            result = _fail(state, "encrypt", exc)
        ray.get(self.counter.end_solo.remote(state.case_id), timeout=self.wait_s)
        return result

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rows = _unpack(batch)
        pending = [i for i, (s, _) in enumerate(rows) if s == PENDING]
        if not pending:
            return _pack(rows)
        ids = [rows[i][1].case_id for i in pending]
        prior = ray.get(self.counter.begin_batch.remote(ids), timeout=self.wait_s)
        if max(prior) > 0:
            # this batch killed an actor before: isolate every case
            logger.warning("batch of %s cases retried after a worker death; running alone", ids)
            for i in pending:
                rows[i] = self._solo(*rows[i])
            return _pack(rows)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in pending:
            st = rows[i][1]
            assert st.original is not None
            groups.setdefault(tuple(st.original.shape), []).append(i)
        for idxs in groups.values():
            try:
                self._encrypt_group([rows[i][1] for i in idxs])
            except Exception:
                # find the culprit: every case of the group alone, each error kept per case
                for i in idxs:
                    try:
                        self._encrypt_group([rows[i][1]])
                    except Exception as exc:
                        rows[i] = _fail(rows[i][1], "encrypt", exc)
        return _pack(rows)


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
    store.put(key, data)
    return OutputObject(
        key=key, format=fmt, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
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
    from medcrypt.processing import foreground_mask, psnr, quantise, ssim

    assert state.original is not None and state.protected is not None
    t0 = time.perf_counter()
    norm = str(ctx.pgd.get("norm", "l2"))  # protection modes (issue 14): l2 or linf budget
    q = quantise(state.protected, state.original, eps=ctx.eps, levels=65535, norm=norm)
    q01 = np.asarray(q, dtype=np.float64) / 65535.0
    diff = q01 - state.original.astype(np.float64)
    l2 = float(np.sqrt(np.sum(diff * diff)))
    spent = l2 if norm == "l2" else (float(np.max(np.abs(diff))) if diff.size else 0.0)
    if not spent <= ctx.eps * (1.0 + 1e-9):
        raise JobError(
            f"quantised image is {spent:.6f} from the original in {norm}, over the budget "
            f"eps={ctx.eps}",
            case_id=state.case_id,
            uri=state.image_uri,
        )
    q01f = q01.astype(np.float32)
    fg = foreground_mask(state.original)
    encoded = {fmt: _encode(fmt, q01f, state.slice_, ctx) for fmt in ctx.formats}
    originals_enc = (
        {fmt: _encode(fmt, state.original, state.slice_, ctx) for fmt in ctx.formats}
        if ctx.write_originals
        else {}
    )
    metrics = ProtectionMetrics(
        l2=l2,
        linf=float(np.max(np.abs(diff))) if diff.size else 0.0,
        psnr=float(psnr(state.original[None], q01f[None])[0]),
        ssim=float(ssim(state.original[None], q01f[None])[0]),
        # over the anatomy only (the mask the Encryptor confines the budget to)
        psnr_foreground=_finite_or_none(float(psnr(state.original, q01f, fg)[0])),
        ssim_foreground=_finite_or_none(float(ssim(state.original, q01f, fg)[0])),
        eps=ctx.eps,
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
    record = CaseRecord(
        case_id=state.case_id,
        run_id=ctx.run_id,
        created_at=utc_now(),
        sources=tuple(state.sources),
        source_digest=state.digest,
        slice=_slice_info(state.slice_, state.original.shape),
        window=(float(state.slice_.window[0]), float(state.slice_.window[1])),
        label=state.label,
        label_name=ctx.class_names[state.label],
        label_source=state.label_source,  # type: ignore[arg-type]
        key_fingerprint=ctx.key_fingerprint,
        model_hash=ctx.model_hash,
        model_arch=ctx.model_arch,
        pgd=dict(ctx.pgd),
        compute=state.compute,
        metrics=metrics,
        outputs=outputs,
        originals=originals,
        timings=CaseTimings(**timings),
        software=software_versions(),
    )
    data = record.model_dump_json(indent=2).encode()
    status = DONE
    try:
        # stale record (inputs or key changed): replace; else only if no other run got there
        store.put(record_key(state.case_id), data, if_absent=not state.has_record)
    except ObjectExistsError:
        other = json.loads(store.get(record_key(state.case_id)))
        if other.get("source_digest") != state.digest:
            raise
        status = SKIPPED  # a concurrent run finished this case first
        # Its outputs were written before its record, ours after: if PGD was not bit-exact
        # (GPU kernels), the stored outputs are now ours. Keep record and outputs consistent.
        stored = {
            o["key"]: hashlib.sha256(store.get(o["key"])).hexdigest()
            for o in other.get("outputs", [])
        }
        theirs_gone = any(stored[o["key"]] != o["sha256"] for o in other.get("outputs", []))
        if theirs_gone and all(stored.get(o.key) == o.sha256 for o in outputs):
            store.put(record_key(state.case_id), data)
            status = DONE
            logger.warning(
                "case %s: concurrent run's outputs replaced; record updated", state.case_id
            )
    with contextlib.suppress(ObjectExistsError):
        store.put(marker_key(state.case_id, state.digest), b"", if_absent=True)
    if state.was_quarantined:
        store.delete(quarantine_key(state.case_id))
    state.timings = timings
    return status


def _quarantine(state: CaseState, ctx: StageContext, store: ObjectStore) -> None:
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
    store.put(quarantine_key(state.case_id), rec.model_dump_json(indent=2).encode())
    if state.digest and state.error_type not in _TRANSIENT:
        with contextlib.suppress(ObjectExistsError):
            store.put(
                marker_key(state.case_id, state.digest + QUARANTINE_MARK), b"", if_absent=True
            )


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
        messages.append(state.error_message if final == QUARANTINED else "")
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
