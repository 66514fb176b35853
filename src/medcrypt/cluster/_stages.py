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
import logging
import os
import pickle
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from medcrypt.cluster._commit import commit, quarantine_mark, release, settle
from medcrypt.cluster._ledger import (
    marker_key,
    original_key,
    output_key,
    quarantine_key,
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
    ImageFormatError,
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
#: decided from the listing (``_commit.settle``): key, model or settings differ from the record
CHANGED = "changed"
#: a lasting failure with these inputs and settings, not retried (no ``--redo quarantined``)
QUARANTINED_BEFORE = "quarantined_before"
#: another live run holds the case's claim
CLAIMED_ELSEWHERE = "claimed_elsewhere"
#: statuses whose row message the driver reports per case
_REPORTED = (QUARANTINED, CHANGED, QUARANTINED_BEFORE, CLAIMED_ELSEWHERE)

#: suffix of a pre-claims ledger marker: "quarantined for a lasting reason with this digest"
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
    #: from the listing of dest: key -> version of the case's objects, its claim generations
    case_objects: dict[str, str] = dataclasses.field(default_factory=dict)
    claims: list[int] = dataclasses.field(default_factory=list)
    #: set by ``_commit.settle``: this run's marker base and claim generation (-1: none)
    mark_base: str = ""
    claim_gen: int = -1


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
    #: ``--redo``: None, "changed", "quarantined" or "all" (see ``_ledger.decide``)
    redo: str | None = None
    #: seconds after which a claim of a run without a fresh heartbeat may be taken over
    claim_lease_s: float = 300.0
    #: PGD fields overridden against the key (``--override-key-pgd``), for every record
    pgd_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


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


def _local_copy(key: str, files: list[ObjectInfo] | None, into: Path, role: str) -> Path:
    """Where :func:`_download` puts an input: ``into/role/<name>``, or a series folder."""
    if files is None:
        return into / role / (key.rsplit("/", 1)[-1] or role)
    return into / role / "series"


def _download(store: ObjectStore, key: str, files: list[ObjectInfo] | None, target: Path) -> None:
    """Copy one input (an object, or every file of a series) to ``target`` (see _local_copy)."""
    if files is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(key, target)
        return
    base = key.rstrip("/") + "/"
    for f in files:
        file = target.joinpath(*f.key[len(base) :].split("/"))
        file.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(f.key, file)


# -- stage 1: fetch + decode (CPU task) --------------------------------------------------------


def _to_source(text: str, copies: Mapping[str, str], tmp: str) -> str:
    """``text`` with every path of a downloaded copy replaced by its source URI.

    ``copies`` maps each local copy (a file, or a DICOM series folder whose files keep their
    relative names) to its source URI; anything else under ``tmp`` is named generically.
    """
    roots = {tmp, os.path.realpath(tmp)}
    pairs: list[tuple[str, str]] = []
    for local, uri in copies.items():
        for root in roots:
            pairs.append((os.path.join(root, os.path.relpath(local, tmp)), uri))
    # longest first, so a series folder's files map before the folder's own prefix
    for local, uri in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(local, uri)
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root, "<downloaded copy>")
    return text


def _as_source_error(
    exc: BaseException, copies: Mapping[str, str], tmp: str, state: CaseState
) -> MedcryptError:
    """The error about a downloaded copy, retold about the source object (URI, not temp path).

    A medcrypt error keeps its type (so transient storage errors stay retryable); any other
    error becomes an :class:`ImageFormatError` naming the original type.
    """
    import copy

    if isinstance(exc, MedcryptError):
        err = copy.copy(exc)
        err.message = _to_source(exc.message, copies, tmp)
        err.uri = None if exc.uri is None else _to_source(exc.uri, copies, tmp)
        err.args = (err.message,)
        if err.case_id is None:
            err.case_id = state.case_id
        return err
    return ImageFormatError(
        f"{type(exc).__name__}: {_to_source(str(exc), copies, tmp)}",
        case_id=state.case_id,
        uri=state.image_uri,
    )


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
            # skip / changed / quarantined before / claimed elsewhere, from the listing; a
            # case that needs work is claimed here (a poison case is not rerun nightly)
            stop = settle(state, ctx, _store(ctx.dest, ctx.endpoint_url, ctx.max_pool))
            if stop is not None:
                state.error_message = stop[1] if stop[0] != SKIPPED else ""
                out.append((stop[0], state))
                continue
            with tempfile.TemporaryDirectory(prefix="medcrypt-fetch-") as tmp:
                image_path = _local_copy(img_key, img_files, Path(tmp), "image")
                mask_path = _local_copy(msk_key, msk_files, Path(tmp), "mask")
                copies = {
                    str(image_path): state.image_uri.rstrip("/"),
                    str(mask_path): state.mask_uri.rstrip("/"),
                }
                try:
                    _download(img_store, img_key, img_files, image_path)
                    _download(msk_store, msk_key, msk_files, mask_path)
                    t1 = time.perf_counter()
                    slice_ = load_case_slice(
                        image_path,
                        mask_path,
                        case_id=state.case_id,
                        tumour_labels=ctx.tumour_labels,
                        fallback=ctx.slice_fallback,  # type: ignore[arg-type]
                    )
                except Exception as exc:
                    raise _as_source_error(exc, copies, tmp, state) from exc
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
