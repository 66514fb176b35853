"""Per-case bookkeeping around the work: decide (from the listing), claim, and commit.

:func:`settle` runs in the fetch stage once a case's source versions are known: it decides
from the one listing of dest (``_ledger.decide``) whether the case is skipped, left as it is
(``changed``: key, model or settings differ and no ``--redo`` asks for it;
``quarantined_before``), or needs work, and for work takes the case's claim
(``_claims``). :func:`commit` runs in the write stage after the outputs are written.

Replacing a case (``--redo``, a repair, changed sources) keeps the output names
``<case>/encrypted.<ext>`` that readers and the study use, and orders the writes so that a
crash never leaves a case that looks finished: outputs first, then the record (the commit
point), then the marker naming the state of all of them, then the removal of what this run did
not write (outputs of formats no longer asked for, older markers, the quarantine record), then
the claim. A run killed anywhere in between leaves a case whose objects no marker describes,
and the next run redoes it with its own settings. Between the first output and the record a
reader may meet new outputs beside the old record; every record carries each output's SHA-256
and store version, so a reader can tell.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from medcrypt.cluster._claims import acquire_claim, release_claim
from medcrypt.cluster._ledger import (
    QUARANTINED_PART,
    Decision,
    Mark,
    case_state_digest,
    decide,
    inputs_digest,
    marker_key,
    original_key,
    output_key,
    quarantine_key,
    record_key,
    settings_marks,
)
from medcrypt.errors import JobError, ObjectExistsError, ObjectNotFoundError
from medcrypt.storage import ObjectStore

__all__ = ["commit", "mark_base", "plan", "quarantine_mark", "release", "settle"]

logger = logging.getLogger(__name__)


def mark_base(state: Any, ctx: Any) -> str:
    """``inputs.key.model.settings`` of this case in this run (see ``_ledger``)."""
    parts = settings_marks(
        key_fingerprint=ctx.key_fingerprint,
        model_hash=ctx.model_hash,
        pgd=ctx.pgd,
        formats=ctx.formats,
        write_originals=ctx.write_originals,
        tumour_labels=ctx.tumour_labels,
        slice_fallback=ctx.slice_fallback,
    )
    return ".".join((inputs_digest(state.sources), *parts))


def _expected(case_id: str, ctx: Any) -> list[str]:
    keys = [output_key(case_id, f) for f in ctx.formats]
    if ctx.write_originals:
        keys += [original_key(case_id, f) for f in ctx.formats]
    return keys


def _record_backs(state: Any, store: ObjectStore) -> bool:
    """A record without a marker: does it describe these inputs and settings, with its
    outputs listed as written? If so, write the marker it lacks."""
    try:
        rec = json.loads(store.get(record_key(state.case_id)))
    except (ObjectNotFoundError, ValueError):
        return False
    mark = str(rec.get("ledger_mark", ""))
    same = mark == state.mark_base if mark else rec.get("source_digest") == state.digest
    objs = state.case_objects
    for out in [*rec.get("outputs", []), *rec.get("originals", [])]:
        version = out.get("version")
        if out.get("key") not in objs or (version is not None and objs[out["key"]] != version):
            return False
    if not same:
        return False
    name = f"{mark}.{case_state_digest(objs)}" if mark else state.digest
    with contextlib.suppress(ObjectExistsError):
        store.put(marker_key(state.case_id, name), b"", if_absent=True)
    return True


def plan(state: Any, ctx: Any) -> Decision:
    """The listing's verdict on a case whose ``sources`` and ``digest`` are set."""
    state.mark_base = mark_base(state, ctx)
    return decide(
        state.prior_digests,
        state.case_objects,
        base=state.mark_base,
        legacy_digest=state.digest,
        expected=_expected(state.case_id, ctx),
        record=record_key(state.case_id),
        redo=ctx.redo,
    )


def settle(state: Any, ctx: Any, store: ObjectStore) -> tuple[str, str] | None:
    """``(status, message)`` when the case stops here, or ``None``: fetch it (claim held).

    ``status`` is ``skipped``, ``changed``, ``quarantined_before`` or ``claimed_elsewhere``.
    """
    d = plan(state, ctx)
    if d.action == "check_record":
        if _record_backs(state, store):
            return "skipped", "done (record without marker: marker added)"
        d = Decision("work", "record does not match its outputs or these settings")
    if d.action == "skip":
        return "skipped", d.reason
    if d.action == "changed":
        return "changed", d.reason
    if d.action == "kept_quarantined":
        return "quarantined_before", d.reason
    claim = acquire_claim(
        store, state.case_id, run_id=ctx.run_id, listed=state.claims, lease_s=ctx.claim_lease_s
    )
    if not claim.held:
        return "claimed_elsewhere", f"run {claim.holder} works on it"
    state.claim_gen = claim.generation
    # another run may have finished (or quarantined) the case between this run's listing and
    # its claim: it wrote its marker before giving the claim back, so one listing tells
    stop = _recheck(state, ctx, store)
    if stop is not None:
        release(state, store)
        return stop
    if d.reason:
        logger.info("case %s: %s", state.case_id, d.reason)
    return None


def _recheck(state: Any, ctx: Any, store: ObjectStore) -> tuple[str, str] | None:
    """After the claim: markers written since this run's listing, and what they mean."""
    prefix = marker_key(state.case_id, "")
    new = [i.key[len(prefix) :] for i in store.list(prefix)]
    new = [m for m in new if m not in state.prior_digests]
    if not new:
        return None
    ours = Mark.parse(state.mark_base + ".x")
    marks = [Mark.parse(m) for m in new]
    if ctx.redo not in ("quarantined", "all") and any(
        m.quarantined and m.base == state.mark_base for m in marks
    ):
        return "quarantined_before", "quarantined by another run since this run listed dest"
    done = [m for m in marks if not m.quarantined and not m.legacy]
    if any(m.base == state.mark_base for m in done):
        return "skipped", "done by another run since this run listed dest"
    if ctx.redo not in ("changed", "all") and any(m.inputs == ours.inputs for m in done):
        return "changed", (
            "another run wrote it with other settings since this run listed dest; "
            "--redo changed redoes it"
        )
    if done:  # a record exists now: this run replaces it (it holds the claim)
        rkey = record_key(state.case_id)
        with contextlib.suppress(ObjectNotFoundError):
            state.case_objects[rkey] = store.stat(rkey).version
    state.prior_digests = [*state.prior_digests, *new]
    return None


def release(state: Any, store: ObjectStore) -> None:
    """Give this run's claim on the case back (no-op without one)."""
    if getattr(state, "claim_gen", -1) >= 0:
        release_claim(store, state.case_id, state.claim_gen, state.claims)
        state.claim_gen = -1


def commit(state: Any, store: ObjectStore, record: bytes, written: dict[str, str]) -> str:
    """Write the record (after the outputs in ``written``: key -> version), the marker, then
    tidy up and release the claim. Returns ``done`` (or ``skipped`` if another run's record
    with the same settings got there first)."""
    rkey = record_key(state.case_id)
    try:
        info = store.put(rkey, record, if_absent=rkey not in state.case_objects)
    except ObjectExistsError:
        other = json.loads(store.get(rkey))
        release(state, store)
        if other.get("ledger_mark") == state.mark_base:
            logger.warning("case %s: another run recorded it first", state.case_id)
            return "skipped"
        raise JobError(
            "another run wrote this case's record while this run held its claim "
            "(is claim_lease_s shorter than a case takes?)",
            case_id=state.case_id,
        ) from None
    objects = {**written, rkey: info.version}
    name = f"{state.mark_base}.{case_state_digest(objects)}"
    with contextlib.suppress(ObjectExistsError):
        store.put(marker_key(state.case_id, name), b"", if_absent=True)
    for key in state.case_objects:
        if key not in objects:
            store.delete(key)  # an output of a format this run does not write
    for old in state.prior_digests:
        if old != name:
            store.delete(marker_key(state.case_id, old))
    if state.was_quarantined:
        store.delete(quarantine_key(state.case_id))
    release(state, store)
    return "done"


def quarantine_mark(state: Any) -> str | None:
    """The marker name of a lasting failure of this case with these inputs and settings."""
    if state.mark_base:
        return f"{state.mark_base}.{QUARANTINED_PART}"
    return None
