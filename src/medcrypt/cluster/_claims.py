"""Claims: each case is worked on by one run at a time, even with two runs into one dest.

Before a run fetches a case that needs work, it creates ``_claims/<case>/<generation>`` with a
conditional create (S3 ``PutObject`` with ``If-None-Match: *``; a hard link / ``O_EXCL`` on a
local folder), whose body names the run. Exactly one of two racing runs gets it; the other
reads it and

- leaves the case alone (``claimed_elsewhere``: not counted as done by it) while the claiming
  run is alive, i.e. ``_runs/<run>/heartbeat`` (rewritten by the driver every
  ``lease / 4`` seconds, see :class:`Heartbeat`) is younger than the lease
  (``claim_lease_s``), or the claim itself is younger than the lease when there is no
  heartbeat;
- takes the case over otherwise (a killed run): it creates the NEXT generation, again
  conditionally, so of two runs that both found the same stale claim only one gets the case.

After its outputs, record and marker are written (or its quarantine record) the run deletes its
claim and the older generations it superseded. A claim is taken only once the listing says the
case needs work; after taking it the run looks at the record once more (one ``stat``), so a
case another run finished between this run's listing and its claim is skipped, not redone.

Clocks: the age of a claim or heartbeat is "now" on the worker minus the store's modification
time, so the nodes' clocks must agree with the store's to well within the lease (NTP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass

from medcrypt.cluster._ledger import claim_key, heartbeat_key
from medcrypt.cluster._records import utc_now
from medcrypt.errors import JobError, MedcryptError, ObjectExistsError, ObjectNotFoundError
from medcrypt.storage import ObjectStore

__all__ = ["ClaimResult", "Heartbeat", "acquire_claim", "release_claim"]

logger = logging.getLogger(__name__)

#: generations one acquisition walks through before giving up (each needs a stale claim)
_MAX_TAKEOVERS = 16


@dataclass(frozen=True)
class ClaimResult:
    """``held``: this run may work on the case (claim ``generation``); else ``holder``."""

    held: bool
    generation: int
    holder: str = ""


def _alive(store: ObjectStore, run_id: str, claim_mtime: float, lease_s: float) -> bool:
    now = time.time()
    try:
        beat = store.stat(heartbeat_key(run_id))
    except ObjectNotFoundError:
        return now - claim_mtime < lease_s
    return now - beat.mtime < lease_s


def acquire_claim(
    store: ObjectStore, case_id: str, *, run_id: str, listed: list[int], lease_s: float
) -> ClaimResult:
    """Claim ``case_id`` for ``run_id`` (see the module docstring).

    Args:
        listed: generations of this case's claims in the run's listing of dest.
    """
    generation = max(listed) if listed else 0
    body = json.dumps({"run_id": run_id, "case_id": case_id, "claimed_at": utc_now()}).encode()
    for _ in range(_MAX_TAKEOVERS):
        key = claim_key(case_id, generation)
        try:
            store.put(key, body, if_absent=True)
            return ClaimResult(True, generation)
        except ObjectExistsError:
            pass
        try:
            info = store.stat(key)
            holder = str(json.loads(store.get(key)).get("run_id", ""))
        except ObjectNotFoundError:
            continue  # released in between: try the same generation again
        except ValueError:
            holder = ""  # unreadable claim: judged by its age alone
        if holder == run_id:
            return ClaimResult(True, generation)  # ours: a retried task of this run
        if _alive(store, holder, info.mtime, lease_s):
            return ClaimResult(False, generation, holder)
        logger.warning(
            "case %s: claim of run %s is older than the %ss lease; taking it over",
            case_id,
            holder or "?",
            lease_s,
        )
        generation += 1
    raise JobError(
        f"could not claim the case: {_MAX_TAKEOVERS} stale claims in a row under "
        f"_claims/{case_id}/",
        case_id=case_id,
    )


def release_claim(store: ObjectStore, case_id: str, generation: int, listed: list[int]) -> None:
    """Delete this run's claim and the older (stale) generations it superseded."""
    for g in sorted({generation, *(x for x in listed if x < generation)}):
        try:
            store.delete(claim_key(case_id, g))
        except MedcryptError as exc:  # a leftover claim only expires; never fail a case on it
            logger.warning("case %s: could not delete claim %s: %s", case_id, g, exc)


class Heartbeat:
    """Driver-side thread rewriting ``_runs/<run_id>/heartbeat`` every ``lease_s / 4`` s."""

    def __init__(self, store: ObjectStore, run_id: str, lease_s: float) -> None:
        self.store, self.run_id = store, run_id
        self.interval = max(0.5, lease_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medcrypt-heartbeat", daemon=True)

    def _beat(self) -> None:
        body = json.dumps({"run_id": self.run_id, "at": utc_now()}).encode()
        self.store.put(heartbeat_key(self.run_id), body)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except MedcryptError as exc:  # a missed beat only makes claims look older
                logger.warning("run %s: heartbeat not written: %s", self.run_id, exc)

    def __enter__(self) -> Heartbeat:
        self._beat()  # before any claim: raises (job not started) if dest is not writable
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with contextlib.suppress(MedcryptError):
            self.store.delete(heartbeat_key(self.run_id))
