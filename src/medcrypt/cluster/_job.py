"""The archive job: one Ray Data streaming pipeline from manifest rows to records.

``run_job(config)`` checks everything it can before any work starts (config, model, key,
manifest, dest), lists dest ONCE to build the ledger index, then streams manifest rows through
fetch (CPU tasks) -> encrypt (GPU actor pool) -> write (CPU tasks). Outputs and records are
written by the tasks themselves, so the driver only counts small status rows: its memory does
not grow with the size of the images, only with the (string) manifest rows and ledger index.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from medcrypt._private_files import write_private
from medcrypt._types import ProgressCallback
from medcrypt.cluster._claims import Heartbeat
from medcrypt.cluster._config import JobConfig
from medcrypt.cluster._ledger import DestIndex, scan_dest, summary_key
from medcrypt.cluster._manifest import Manifest
from medcrypt.cluster._records import utc_now
from medcrypt.cluster._stages import (
    CHANGED,
    CLAIMED_ELSEWHERE,
    DONE,
    QUARANTINED,
    QUARANTINED_BEFORE,
    SKIPPED,
    AttemptCounter,
    CaseState,
    EncryptActor,
    StageContext,
    fetch_batch,
    initial_row,
    write_batch,
)
from medcrypt.cluster._summary import MAX_LISTED, RunSummary, StageTimings
from medcrypt.cluster._write import _without_work_files
from medcrypt.errors import ConfigError, JobError, MedcryptError
from medcrypt.processing import release_json
from medcrypt.storage import ObjectStore, open_store, split_uri

__all__ = ["JobInputs", "PlanEntry", "plan_job", "prepare_job", "run_job"]

logger = logging.getLogger(__name__)

#: statuses whose cases the summary lists by name
_LISTED = (QUARANTINED, QUARANTINED_BEFORE, CHANGED)
#: cases per block of the manifest dataset: small blocks keep the pipeline streaming
_ROWS_PER_BLOCK = 2
#: memory a fetch / write task reserves (one decoded volume and its slice). Declaring it also
#: keeps Ray from fusing the fetch tasks into the GPU actors, so IO overlaps compute instead of
#: running inside the actors.
_TASK_MEMORY = 512 * 1024 * 1024


@dataclass(frozen=True)
class JobInputs:
    """What :func:`prepare_job` checked and loaded before any work starts."""

    config: JobConfig
    run_id: str
    model_blob: bytes
    model_hash: str
    model_arch: str
    class_names: tuple[str, ...]
    key: Any  # EncryptionKey
    key_fingerprint: str
    #: the PGD settings this run uses: the key's, with what the job may change (see
    #: ``processing.settings_from_key``); ``pgd_overrides`` = fields overridden against the key
    pgd: Any  # PGDSettings
    pgd_overrides: dict[str, dict[str, Any]]
    rows: Manifest  # re-iterable stream of ManifestRow, with len()
    dest: ObjectStore
    index: DestIndex
    #: folders under the source that ``layout`` discovery left out, each ``"folder: why"``
    #: (at most ``_discover.MAX_REASONS``), and how many there were in all
    skipped_folders: tuple[str, ...] = ()
    skipped_folders_total: int = 0


def _new_run_id() -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def _read_local_or_store(uri: str, endpoint_url: str | None, *, what: str) -> bytes:
    """Bytes of a model/key given as a local path or an s3:// URI."""
    try:
        root, key = split_uri(uri)
        return open_store(root, endpoint_url=endpoint_url).get(key)
    except MedcryptError as exc:
        raise ConfigError(f"cannot read the {what}: {exc}", uri=uri) from exc


def _normalise_root(uri: str) -> str:
    return uri.rstrip("/")


def _locate(value: str, source: str | None) -> tuple[str, str, str]:
    """(store root, key, full URI) of a manifest entry (a key under source, or a URI)."""
    if source:
        return source, value, f"{_normalise_root(source)}/{value}"
    folder = value.endswith("/")
    root, key = split_uri(value.rstrip("/") if folder else value)
    return root, key + ("/" if folder else ""), value


def _read_rows(
    config: JobConfig, class_names: tuple[str, ...]
) -> tuple[Manifest, tuple[str, ...], int]:
    """The checked manifest, or (``layout`` set) one discovered from the source right now,
    with the folders discovery left out (``"folder: why"``) and their number."""
    from medcrypt.cluster._discover import discover
    from medcrypt.cluster._manifest import read_manifest

    endpoint = config.endpoint_url
    if config.manifest is not None:
        manifest = read_manifest(
            config.manifest, source=config.source, class_names=class_names, endpoint_url=endpoint
        )
        return manifest, (), 0
    assert config.layout is not None  # JobConfig requires manifest or layout
    fd, tmp = tempfile.mkstemp(prefix="medcrypt-discovered-", suffix=".csv")
    os.close(fd)
    found = discover(
        open_store(config.source, endpoint_url=endpoint, max_pool=config.max_pool),
        layout=config.layout,
        out=tmp,
        class_names=class_names,
    )
    # read_manifest re-reads the file on every iteration: keep it until the process ends
    atexit.register(_unlink_quietly, tmp)
    logger.info("discovered %s cases (%s folders skipped)", found.cases, found.skipped)
    if found.skipped:
        logger.warning(
            "%s folder(s) under %s left out, not valid %s cases: %s",
            found.skipped,
            config.source,
            config.layout,
            "; ".join(found.reasons[:5]) + (" ..." if found.skipped > 5 else ""),
        )
    manifest = read_manifest(tmp, source=config.source, class_names=class_names)
    return manifest, found.reasons, found.skipped


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def prepare_job(config: JobConfig) -> JobInputs:
    """Validate and load everything the job needs; raise before any case is touched.

    Raises:
        ConfigError / ManifestError: bad config, manifest, URIs, dest inside source.
        ModelError / EncryptionKeyError: unreadable model or key, or they do not fit.
    """
    from medcrypt.processing import EncryptionKey, load_checkpoint, settings_from_key

    endpoint = config.endpoint_url
    # model: read once (also what the actors get), verified by load_checkpoint
    model_blob = _read_local_or_store(str(config.model), endpoint, what="model checkpoint")
    with tempfile.TemporaryDirectory(prefix="medcrypt-check-") as tmp:
        mpath = Path(tmp) / "model.pt"
        mpath.write_bytes(model_blob)
        loaded = load_checkpoint(mpath, map_location="cpu")
        if "://" in str(config.key):
            kpath = Path(tmp) / "key.json"
            write_private(kpath, _read_local_or_store(str(config.key), endpoint, what="key"))
            key = EncryptionKey.load(kpath)
        else:
            key = EncryptionKey.load(config.key)
    key.check_model(loaded.num_classes, loaded.class_names)
    pgd, overrides = settings_from_key(
        key.pgd, config.pgd.given(), override=config.override_key_pgd
    )
    if overrides:
        logger.warning(
            "PGD settings overridden against key %s: %s", key.fingerprint, sorted(overrides)
        )
    rows, skipped_folders, skipped_total = _read_rows(config, loaded.class_names)
    dest = open_store(config.dest, endpoint_url=endpoint, max_pool=config.max_pool)
    index = scan_dest(dest)
    if config.run_id is not None and config.run_id in index.runs:
        raise ConfigError(
            f"run id {config.run_id!r} was used before in this dest (its summary is "
            f"{summary_key(config.run_id)}); give another --run-id, or none for a new one",
            field="run_id",
        )
    return JobInputs(
        config=config,
        run_id=config.run_id or _new_run_id(),
        model_blob=model_blob,
        model_hash=loaded.content_hash,
        model_arch=loaded.arch,
        class_names=tuple(loaded.class_names),
        key=key,
        key_fingerprint=key.fingerprint,
        pgd=pgd,
        pgd_overrides=overrides,
        rows=rows,
        dest=dest,
        index=index,
        skipped_folders=skipped_folders,
        skipped_folders_total=skipped_total,
    )


def _states(inputs: JobInputs) -> Iterator[CaseState]:
    source = inputs.config.source
    for r in inputs.rows:
        image_root, image_key, image_uri = _locate(r.image, source)
        mask_root, mask_key, mask_uri = _locate(r.mask, source)
        yield CaseState(
            case_id=r.case_id,
            image_uri=image_uri,
            mask_uri=mask_uri,
            image_root=image_root,
            image_key=image_key,
            mask_root=mask_root,
            mask_key=mask_key,
            label_given=r.label_index,
            prior_digests=inputs.index.prior_digests(r.case_id),
            has_record=inputs.index.has_record(r.case_id),
            was_quarantined=inputs.index.was_quarantined(r.case_id),
            case_objects=inputs.index.objects_of(r.case_id),
            claims=inputs.index.claims_of(r.case_id),
        )


def _manifest_blocks(inputs: JobInputs) -> list[Any]:
    """Stream manifest rows into small Arrow blocks in the object store; keep only refs.

    Small blocks keep every stage busy (a map task works through one block); the driver
    never holds the whole manifest, only one block's rows at a time.
    """
    import pyarrow as pa
    import ray

    per_block = max(1, min(16, len(inputs.rows) // 64))
    refs: list[Any] = []
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        table = pa.table(
            {
                "case_id": pa.array([r["case_id"] for r in chunk], pa.string()),
                "status": pa.array([r["status"] for r in chunk], pa.string()),
                "payload": pa.array([r["payload"] for r in chunk], pa.binary()),
            }
        )
        refs.append(ray.put(table))
        chunk.clear()

    for state in _states(inputs):
        chunk.append(initial_row(state))
        if len(chunk) >= per_block:
            flush()
    if chunk:
        flush()
    return refs


def _stage_context(inputs: JobInputs) -> StageContext:
    c = inputs.config
    return StageContext(
        run_id=inputs.run_id,
        dest=c.dest,
        endpoint_url=c.endpoint_url,
        max_pool=c.max_pool,
        formats=tuple(c.formats),
        write_originals=bool(c.write_originals),
        eps=float(inputs.pgd.eps),
        key_fingerprint=inputs.key_fingerprint,
        model_hash=inputs.model_hash,
        model_arch=inputs.model_arch,
        class_names=inputs.class_names,
        pgd=inputs.pgd.model_dump(mode="json"),
        pgd_overrides=inputs.pgd_overrides,
        tumour_labels=None if c.tumour_labels is None else tuple(c.tumour_labels),
        slice_fallback=c.slice_fallback,
        redo=c.redo,
        claim_lease_s=float(c.claim_lease_s),
        series_description="medcrypt protected (adversarial data encryption)",
    )


@contextlib.contextmanager
def _ray_session() -> Iterator[None]:
    """Use a running Ray (or RAY_ADDRESS); else start a local one for this job."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def build_dataset(inputs: JobInputs, counter: Any, model_ref: Any, key_ref: Any) -> Any:
    """The lazy Ray Data pipeline (nothing runs until it is iterated)."""
    import ray
    import ray.data

    c = inputs.config
    ctx = _stage_context(inputs)
    ds: ray.data.Dataset = ray.data.from_arrow_refs(_manifest_blocks(inputs))
    ds = ds.map_batches(
        cast(Any, fetch_batch),
        fn_kwargs={"ctx": ctx},
        batch_size=_ROWS_PER_BLOCK,
        batch_format="numpy",
        num_cpus=c.fetch_cpus,
        memory=_TASK_MEMORY,
    )
    ds = ds.map_batches(
        EncryptActor,
        fn_constructor_kwargs={
            "model_blob": model_ref,
            "key_blob": key_ref,
            "pgd": inputs.pgd.model_dump(mode="json"),
            "device": "auto" if c.num_gpus > 0 else "cpu",
            "counter": counter,
        },
        compute=ray.data.ActorPoolStrategy(min_size=c.min_actors, max_size=c.max_actors),
        batch_size=int(c.batch_size),
        batch_format="numpy",
        num_gpus=c.num_gpus,
        num_cpus=c.actor_cpus,
        # Ray Data's default max_restarts=-1 / max_task_retries=-1 is kept: a dead actor is
        # restarted and its batch retried. AttemptCounter bounds that per case (a batch that
        # comes back runs case by case; a case whose solo run died MAX_SOLO_CRASHES times is
        # quarantined), so every retry makes progress and the job always ends.
    )
    ds = ds.map_batches(
        cast(Any, write_batch),
        fn_kwargs={"ctx": ctx},
        batch_size=_ROWS_PER_BLOCK,
        batch_format="numpy",
        num_cpus=c.fetch_cpus,
        memory=_TASK_MEMORY,
    )
    return ds


def run_job(config: JobConfig, *, progress: ProgressCallback | None = None) -> RunSummary:
    """Run the archive job described by ``config`` and return (and write) its summary.

    Raises before any work for bad config/manifest/model/key/URIs. Once running, per-case
    failures become quarantine records; a cluster or storage failure that stops the job is
    reported in the summary (``error``, ``failed`` = cases not accounted for), exit code 4.
    """

    inputs = prepare_job(config)
    return execute(inputs, progress=progress)


def execute(inputs: JobInputs, *, progress: ProgressCallback | None = None) -> RunSummary:
    """Run the pipeline for already-prepared inputs (see :func:`prepare_job`)."""
    import ray
    import ray.data
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    c = inputs.config
    started_at = utc_now()
    t0 = time.perf_counter()
    total = len(inputs.rows)
    counts: Counter[str] = Counter()
    timings = dict.fromkeys(("fetch_s", "decode_s", "pgd_s", "encode_s", "write_s"), 0.0)
    error: str | None = None
    listed: dict[str, list[str]] = {s: [] for s in _LISTED}
    logger.info("run %s: %s cases from %s to %s", inputs.run_id, total, c.manifest, c.dest)
    with Heartbeat(inputs.dest, inputs.run_id, float(c.claim_lease_s)), _ray_session():
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = False
        dctx.max_errored_blocks = 0
        dctx.wait_for_min_actors_s = int(c.actor_start_timeout_s)
        node = ray.get_runtime_context().get_node_id()
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if c.num_gpus > 0 and gpus < c.num_gpus * c.min_actors:
            logger.warning(
                "num_gpus=%s x min_actors=%s but the cluster has %s GPUs now; waiting up to %ss "
                "for the autoscaler (actor_start_timeout_s)",
                c.num_gpus,
                c.min_actors,
                gpus,
                c.actor_start_timeout_s,
            )
        counter = AttemptCounter.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote()
        model_ref = ray.put(inputs.model_blob)
        key_ref = ray.put(inputs.key)
        if progress:
            progress(0, total, "starting")
        try:
            if total:
                ds = build_dataset(inputs, counter, model_ref, key_ref)
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for status, case_id, msg in zip(
                        batch["status"], batch["case_id"], batch["message"], strict=True
                    ):
                        counts[str(status)] += 1
                        logger.debug("case %s: %s %s", case_id, status, msg)
                        named = listed.get(str(status))
                        if named is not None and len(named) < MAX_LISTED:
                            named.append(f"{case_id}: {msg}" if msg else str(case_id))
                    for k in timings:
                        timings[k] += float(np.sum(batch[k]))
                    if progress:
                        done = sum(counts.values())
                        rate = done / max(time.perf_counter() - t0, 1e-9)
                        progress(
                            done, total, f"{rate:.2f} cases/s, {counts[QUARANTINED]} quarantined"
                        )
        except Exception as exc:  # the job itself stopped: report it, rerun resumes
            logger.error("run %s stopped: %s", inputs.run_id, exc, exc_info=True)
            error = _without_work_files(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                ray.kill(counter)
    wall = time.perf_counter() - t0
    accounted = counts[DONE] + counts[SKIPPED] + sum(counts[s] for s in _LISTED)
    accounted += counts[CLAIMED_ELSEWHERE]
    summary = RunSummary(
        run_id=inputs.run_id,
        source=str(c.source),
        dest=str(c.dest),
        started_at=started_at,
        finished_at=utc_now(),
        total=total,
        done=counts[DONE],
        skipped=counts[SKIPPED],
        quarantined=counts[QUARANTINED],
        failed=max(0, total - accounted),
        quarantined_before=counts[QUARANTINED_BEFORE],
        changed=counts[CHANGED],
        claimed_elsewhere=counts[CLAIMED_ELSEWHERE],
        quarantined_cases=tuple(listed[QUARANTINED]),
        quarantined_before_cases=tuple(listed[QUARANTINED_BEFORE]),
        changed_cases=tuple(listed[CHANGED]),
        wall_s=wall,
        cases_per_s=(counts[DONE] / wall) if wall > 0 else 0.0,
        stage_totals=StageTimings(**timings),
        key_fingerprint=inputs.key_fingerprint,
        model_hash=inputs.model_hash,
        pgd=inputs.pgd.model_dump(mode="json"),
        pgd_overrides=inputs.pgd_overrides,
        skipped_folders=inputs.skipped_folders,
        skipped_folders_total=inputs.skipped_folders_total,
        error=error,
    )
    try:
        inputs.dest.put(
            summary_key(inputs.run_id),
            release_json(summary, where=f"summary of run {inputs.run_id}"),
            if_absent=True,  # a run id is used once (prepare_job refuses a used one)
        )
    except MedcryptError as exc:
        raise JobError(f"could not write the run summary: {exc}", uri=c.dest) from exc
    logger.info(
        "run %s: %s done, %s skipped, %s quarantined, %s failed in %.1fs",
        inputs.run_id,
        summary.done,
        summary.skipped,
        summary.quarantined,
        summary.failed,
        wall,
    )
    return summary


#: dry-run status per ``_ledger.decide`` action
_PLAN_STATUS = {"skip": "skipped", "changed": "changed", "kept_quarantined": "quarantined"}


@dataclass(frozen=True)
class PlanEntry:
    """What ``--dry-run`` says about one case: ``new`` (new, changed sources, incomplete, or
    asked for by ``--redo``), ``skipped``, ``changed`` (key, model or settings differ from the
    record; not redone without ``--redo changed``), ``quarantined`` (a lasting failure with the
    same inputs and settings, not retried), ``invalid`` (with the reason) or ``left-out``
    (with ``layout``: a folder that is not a valid case; ``case_id`` is the folder)."""

    case_id: str
    status: str
    reason: str = ""


def plan_job(config: JobConfig) -> Iterator[PlanEntry]:
    """Dry run: classify every case like the job would, reading dest once and writing nothing.

    The same checks as :func:`run_job` run first (bad config / manifest / model / key raise).
    Source versions are read with one ``stat`` per source object, on the driver. With
    ``layout``, every folder discovery left out comes first, as ``left-out`` (the folder
    in ``case_id``, why in ``reason``).
    """
    from medcrypt.cluster._commit import plan as plan_case
    from medcrypt.cluster._fetch import _stat_source
    from medcrypt.cluster._records import source_digest
    from medcrypt.cluster._rows import _store

    inputs = prepare_job(config)
    ctx = _stage_context(inputs)
    endpoint = config.endpoint_url
    for text in inputs.skipped_folders:
        folder, _, why = text.partition(": ")
        yield PlanEntry(folder, "left-out", why)
    for st in _states(inputs):
        try:
            img, _ = _stat_source(
                _store(st.image_root, endpoint, config.max_pool),
                st.image_key,
                role="image",
                uri=st.image_uri,
                case_id=st.case_id,
            )
            msk, _ = _stat_source(
                _store(st.mask_root, endpoint, config.max_pool),
                st.mask_key,
                role="mask",
                uri=st.mask_uri,
                case_id=st.case_id,
            )
        except MedcryptError as exc:
            yield PlanEntry(st.case_id, "invalid", str(exc))
            continue
        st.sources = [img, msk]
        st.digest = source_digest(st.sources, inputs.key_fingerprint)
        d = plan_case(st, ctx)
        status = _PLAN_STATUS.get(d.action, "new")
        if d.action == "check_record":
            yield PlanEntry(st.case_id, status, "record without ledger marker: checked at run time")
        else:
            yield PlanEntry(st.case_id, status, "" if d.reason == "done" else d.reason)
