"""The archive job: one Ray Data streaming pipeline from manifest rows to records.

``run_job(config)`` checks everything it can before any work starts (config, model, key,
manifest, dest: ``_prepare``), lists dest ONCE to build the ledger index, then streams
manifest rows through fetch (CPU tasks) -> encrypt (GPU actor pool) -> write (CPU tasks).
Outputs and records are written by the tasks themselves, so the driver only counts small
status rows: its memory does not grow with the size of the images, only with the (string)
manifest rows and ledger index.
The dry run (``plan_job``) is in ``_plan``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import numpy as np

from medcrypt._types import ProgressCallback
from medcrypt.cluster._claims import Heartbeat
from medcrypt.cluster._config import JobConfig
from medcrypt.cluster._ledger import summary_key
from medcrypt.cluster._plan import PlanEntry, plan_job
from medcrypt.cluster._prepare import JobInputs, _stage_context, _states, prepare_job
from medcrypt.cluster._records import utc_now
from medcrypt.cluster._stages import (
    CHANGED,
    CLAIMED_ELSEWHERE,
    DONE,
    QUARANTINED,
    QUARANTINED_BEFORE,
    SKIPPED,
    AttemptCounter,
    EncryptActor,
    fetch_batch,
    initial_row,
    write_batch,
)
from medcrypt.cluster._summary import MAX_LISTED, RunSummary, StageTimings
from medcrypt.cluster._write import _without_work_files
from medcrypt.errors import JobError, MedcryptError
from medcrypt.processing import release_json

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
