"""``medcrypt encrypt --dry-run``: what the job would do with each case, writing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from medcrypt.cluster._config import JobConfig
from medcrypt.cluster._prepare import _stage_context, _states, prepare_job
from medcrypt.errors import MedcryptError

__all__ = ["PlanEntry", "plan_job"]


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
