"""What flows between the archive job's stages: one row per case, its :class:`CaseState`.

Every row carries ``case_id``, ``status`` and ``payload`` (the pickled :class:`CaseState`). A
stage works only on ``pending`` rows and passes every other row through untouched; a failure
becomes an ``error`` row naming the stage (:func:`_fail`). :class:`StageContext` is the
run-wide settings every CPU stage reads; :func:`_store` the one store per root per worker.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medcrypt.cluster._records import SourceObject
from medcrypt.errors import MedcryptError
from medcrypt.storage import ObjectStore, open_store

__all__ = ["CaseState", "StageContext", "initial_row"]

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
    #: the anatomy mask the Encryptor computed for ``original`` (the write stage's foreground
    #: metrics reuse it instead of computing it again); None before encryption
    foreground: np.ndarray | None = None
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
