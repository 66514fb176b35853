"""Dest layout and the ledger: what earlier runs finished, from ONE listing of dest.

Layout under dest (everything the job writes)::

    <case>/encrypted.png | .nii.gz | .dcm     protected outputs (content-addressed in the record)
    <case>/record.json                        CaseRecord, written LAST, put-if-absent
    _ledger/<case>/<mark>                     empty marker, see below
    _quarantine/<case>.json                   QuarantineRecord of the latest failed attempt
    _claims/<case>/<generation>               "run R works on this case" (see ``_claims``)
    _runs/<run_id>/summary.json               RunSummary
    _runs/<run_id>/heartbeat                  while run R is alive (see ``_claims``)
    _originals/<case>/original.*              only with ``write_originals``

A marker's name says what the case's present objects are, so that ONE listing of dest decides
every case without reading a record::

    <inputs>.<key>.<model>.<settings>.<state>        done
    <inputs>.<key>.<model>.<settings>.quarantined    failed for a lasting reason

``inputs`` digests the source versions, ``key`` / ``model`` / ``settings`` the key fingerprint,
the model hash and everything else that shapes an output (PGD, formats, originals, tumour
labels, slice fallback), and ``state`` digests the key and version of every object under
``<case>/`` and ``_originals/<case>/`` as that run left them (record included). A case is
skipped only when a marker's state equals what the listing shows now and its other parts
equal this run's: a deleted or replaced output or record makes the case "incomplete" and it
is redone. Markers from before this scheme (``<32 hex>`` of sources + key) still count as done
when the record and the outputs of this run's formats are listed. A record without any marker
(a driver killed between the two writes) is the only case where the record itself is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medcrypt.storage import ObjectStore

__all__ = [
    "RESERVED_PREFIXES",
    "Decision",
    "DestIndex",
    "Mark",
    "case_state_digest",
    "claim_key",
    "decide",
    "heartbeat_key",
    "inputs_digest",
    "marker_key",
    "original_key",
    "output_key",
    "quarantine_key",
    "record_key",
    "scan_dest",
    "settings_marks",
    "summary_key",
]

logger = logging.getLogger(__name__)

RESERVED_PREFIXES = ("_ledger", "_quarantine", "_runs", "_originals", "_claims")

#: output format name -> file extension
EXTENSIONS = {"png": "png", "nifti": "nii.gz", "dicom": "dcm"}


def record_key(case_id: str) -> str:
    return f"{case_id}/record.json"


def output_key(case_id: str, fmt: str) -> str:
    return f"{case_id}/encrypted.{EXTENSIONS[fmt]}"


def original_key(case_id: str, fmt: str) -> str:
    return f"_originals/{case_id}/original.{EXTENSIONS[fmt]}"


def quarantine_key(case_id: str) -> str:
    return f"_quarantine/{case_id}.json"


def marker_key(case_id: str, digest: str) -> str:
    return f"_ledger/{case_id}/{digest}"


def summary_key(run_id: str) -> str:
    return f"_runs/{run_id}/summary.json"


def heartbeat_key(run_id: str) -> str:
    return f"_runs/{run_id}/heartbeat"


def claim_key(case_id: str, generation: int) -> str:
    return f"_claims/{case_id}/{generation:06d}"


#: suffix of a marker that says "quarantined for a lasting reason with these inputs/settings"
QUARANTINED_PART = "quarantined"


def _h(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def inputs_digest(sources: Iterable[Any]) -> str:
    """Digest of a case's source objects (role, URI, version), order-free."""
    lines = sorted(f"{s.role}\0{s.uri}\0{s.version}" for s in sources)
    return _h("\n".join(lines), 20)


def settings_marks(
    *,
    key_fingerprint: str,
    model_hash: str,
    pgd: Mapping[str, Any],
    formats: Sequence[str],
    write_originals: bool,
    tumour_labels: Sequence[int] | None,
    slice_fallback: str,
) -> tuple[str, str, str]:
    """(key, model, settings) parts of a marker: what made an output, besides the sources."""
    settings = json.dumps(
        {
            "pgd": dict(pgd),
            "formats": sorted(formats),
            "write_originals": bool(write_originals),
            "tumour_labels": None if tumour_labels is None else sorted(tumour_labels),
            "slice_fallback": slice_fallback,
        },
        sort_keys=True,
        default=str,
    )
    return _h(key_fingerprint, 10), _h(model_hash, 10), _h(settings, 10)


def case_state_digest(objects: Mapping[str, str]) -> str:
    """Digest of a case's objects (key -> version) under ``<case>/`` and ``_originals/<case>/``."""
    return _h("\n".join(f"{k}\0{v}" for k, v in sorted(objects.items())), 16)


@dataclass(frozen=True)
class Mark:
    """A parsed ``_ledger/<case>/<name>`` marker (``legacy``: a pre-scheme 32-hex digest)."""

    name: str
    inputs: str = ""
    key: str = ""
    model: str = ""
    settings: str = ""
    state: str = ""
    quarantined: bool = False
    legacy: bool = False

    @classmethod
    def parse(cls, name: str) -> Mark:
        parts = name.split(".")
        if len(parts) == 5:
            q = parts[4] == QUARANTINED_PART
            i, k, m, st = parts[:4]
            return cls(name, i, k, m, st, state="" if q else parts[4], quarantined=q)
        return cls(name, legacy=True, quarantined=name.endswith("." + QUARANTINED_PART))

    @property
    def base(self) -> str:
        return ".".join((self.inputs, self.key, self.model, self.settings))


@dataclass(frozen=True)
class Decision:
    """What to do with one case: ``skip``, ``changed`` (settings differ, left as they are),
    ``kept_quarantined`` (a lasting failure with these inputs and settings, not retried),
    ``check_record`` (a record and no marker: read the record), or ``work`` (new, redo, or
    repair), with the reason in words."""

    action: str
    reason: str = ""


def decide(
    marks: Sequence[str],
    objects: Mapping[str, str],
    *,
    base: str,
    legacy_digest: str,
    expected: Sequence[str],
    record: str,
    redo: str | None,
) -> Decision:
    """Decide one case from the listing alone (see the module docstring).

    Args:
        marks: the case's marker names; objects: its listed objects (key -> version).
        base: this run's ``inputs.key.model.settings``; legacy_digest: the pre-scheme digest.
        expected: the output keys this run would write; record: the record key.
        redo: ``None``, ``"changed"``, ``"quarantined"`` or ``"all"``.
    """
    parsed = [Mark.parse(m) for m in marks]
    now = case_state_digest(objects)
    ours = Mark.parse(base + ".x")
    current = [m for m in parsed if not m.legacy and not m.quarantined and m.state == now]
    if current and current[-1].base == base:
        return Decision("work", "--redo all") if redo == "all" else Decision("skip", "done")
    if any(m.quarantined and not m.legacy and m.base == base for m in parsed) or (
        legacy_digest + "." + QUARANTINED_PART in marks
    ):
        if redo in ("quarantined", "all"):
            return Decision("work", f"--redo {redo}: retrying a quarantined case")
        return Decision("kept_quarantined", "failed before with these inputs and settings")
    if current:
        m = current[-1]
        if m.inputs != ours.inputs:
            return Decision("work", "the sources changed since the record")
        what = [
            name
            for name, a, b in (
                ("key", m.key, ours.key),
                ("model", m.model, ours.model),
                ("settings (PGD, formats, slice)", m.settings, ours.settings),
            )
            if a != b
        ]
        text = " and ".join(what) + " differ from the record"
        if redo in ("changed", "all"):
            return Decision("work", f"--redo {redo}: {text}")
        return Decision("changed", f"{text}; --redo changed redoes it")
    if legacy_digest in marks and record in objects and all(k in objects for k in expected):
        return Decision("work", "--redo all") if redo == "all" else Decision("skip", "done")
    done = [m for m in parsed if not m.quarantined]
    if record in objects and not done:
        return Decision("check_record", "record without ledger marker")
    if any(m.legacy for m in done):
        return Decision("work", "sources or key changed since the record (an older marker)")
    if done:
        return Decision("work", "record or outputs missing or replaced since they were written")
    return Decision("work", "")


@dataclass
class DestIndex:
    """What one listing of dest says about earlier runs (strings only, no records read)."""

    digests: dict[str, list[str]] = field(default_factory=dict)
    records: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    #: per case: key -> version of every object under ``<case>/`` and ``_originals/<case>/``
    case_objects: dict[str, dict[str, str]] = field(default_factory=dict)
    #: per case: generations of its ``_claims/<case>/`` objects
    claims: dict[str, list[int]] = field(default_factory=dict)
    #: run ids with anything under ``_runs/<run_id>/``
    runs: set[str] = field(default_factory=set)
    objects: int = 0

    def prior_digests(self, case_id: str) -> list[str]:
        return self.digests.get(case_id, [])

    def has_record(self, case_id: str) -> bool:
        return case_id in self.records

    def was_quarantined(self, case_id: str) -> bool:
        return case_id in self.quarantined

    def objects_of(self, case_id: str) -> dict[str, str]:
        return dict(self.case_objects.get(case_id, {}))

    def claims_of(self, case_id: str) -> list[int]:
        return sorted(self.claims.get(case_id, []))


def scan_dest(store: ObjectStore) -> DestIndex:
    """List dest once and index markers, records, outputs, claims and runs by case."""
    index = DestIndex()
    for info in store.list(""):
        index.objects += 1
        key = info.key
        parts = key.split("/")
        if key.startswith("_ledger/"):
            if len(parts) >= 3:
                case_id = "/".join(parts[1:-1])
                index.digests.setdefault(case_id, []).append(parts[-1])
        elif key.startswith("_quarantine/") and key.endswith(".json"):
            index.quarantined.add(key[len("_quarantine/") : -len(".json")])
        elif key.startswith("_claims/"):
            if len(parts) == 3 and parts[2].isdigit():
                index.claims.setdefault(parts[1], []).append(int(parts[2]))
        elif key.startswith("_runs/"):
            if len(parts) >= 3:
                index.runs.add(parts[1])
        elif key.startswith("_originals/"):
            if len(parts) >= 3:
                index.case_objects.setdefault(parts[1], {})[key] = info.version
        elif not key.startswith(RESERVED_PREFIXES) and len(parts) >= 2:
            index.case_objects.setdefault(parts[0], {})[key] = info.version
            if key.endswith("/record.json") and len(parts) == 2:
                index.records.add(parts[0])
    logger.info(
        "dest index: %s objects, %s records, %s markers, %s quarantined, %s claims",
        index.objects,
        len(index.records),
        sum(len(v) for v in index.digests.values()),
        len(index.quarantined),
        sum(len(v) for v in index.claims.values()),
    )
    return index
