"""Stage 2 of the archive job, a GPU actor: batched PGD + combiner per image shape.

:class:`EncryptActor` loads the model and key once per actor. Crash accounting through
:class:`AttemptCounter` (see there): a case that keeps killing its worker is quarantined
instead of retried forever.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ray

from medcrypt.cluster._rows import PENDING, CaseState, _fail, _pack, _unpack
from medcrypt.errors import JobError

__all__ = ["AttemptCounter", "EncryptActor"]

logger = logging.getLogger(__name__)

#: Fault injection for the integration tests: comma-separated case ids whose encryption kills
#: the worker process (as a segfaulting CUDA kernel would). Unset in production.
FAULT_KILL_ENV = "MEDCRYPT_FAULT_KILL_CASES"

#: how many times one case may be in flight, alone, when its actor died before giving up
MAX_SOLO_CRASHES = 2


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
        # PSNR / SSIM are measured on the quantised release by the write stage (CPU, beside
        # the next batch's PGD): not here as well
        result = self.encryptor.encrypt(images, labels, metrics=False)
        share = (time.perf_counter() - t0) / len(states)
        for i, st in enumerate(states):
            st.protected = np.asarray(result.images[i], dtype=np.float32)
            st.foreground = None if result.foreground is None else result.foreground[i]
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
