"""Dest layout and the ledger: what earlier runs finished, from ONE listing of dest.

Layout under dest (everything the job writes)::

    <case>/encrypted.png | .nii.gz | .dcm     protected outputs (content-addressed in the record)
    <case>/record.json                        CaseRecord, written LAST, put-if-absent
    _ledger/<case>/<digest>                   empty marker: "<case> done for inputs+key <digest>"
    _quarantine/<case>.json                   QuarantineRecord of the latest failed attempt
    _runs/<run_id>/summary.json               RunSummary
    _originals/<case>/original.*              only with ``write_originals``

The marker's key carries the digest of (source versions, key fingerprint), so a single listing
of dest answers "is this case already done for these inputs and this key?" for every case
without reading one record per case. A record without a marker (a driver killed between the
two writes) is the only case where the record itself is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from medcrypt.storage import ObjectStore

__all__ = [
    "RESERVED_PREFIXES",
    "DestIndex",
    "marker_key",
    "original_key",
    "output_key",
    "quarantine_key",
    "record_key",
    "scan_dest",
    "summary_key",
]

logger = logging.getLogger(__name__)

RESERVED_PREFIXES = ("_ledger", "_quarantine", "_runs", "_originals")

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


@dataclass
class DestIndex:
    """What one listing of dest says about earlier runs (strings only, no records read)."""

    digests: dict[str, list[str]] = field(default_factory=dict)
    records: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    objects: int = 0

    def prior_digests(self, case_id: str) -> list[str]:
        return self.digests.get(case_id, [])

    def has_record(self, case_id: str) -> bool:
        return case_id in self.records

    def was_quarantined(self, case_id: str) -> bool:
        return case_id in self.quarantined


def scan_dest(store: ObjectStore) -> DestIndex:
    """List dest once and index markers, records and quarantine records by case."""
    index = DestIndex()
    for info in store.list(""):
        index.objects += 1
        key = info.key
        if key.startswith("_ledger/"):
            parts = key.split("/")
            if len(parts) >= 3:
                case_id = "/".join(parts[1:-1])
                index.digests.setdefault(case_id, []).append(parts[-1])
        elif key.startswith("_quarantine/") and key.endswith(".json"):
            index.quarantined.add(key[len("_quarantine/") : -len(".json")])
        elif key.endswith("/record.json") and not key.startswith(RESERVED_PREFIXES):
            index.records.add(key[: -len("/record.json")])
    logger.info(
        "dest index: %s objects, %s records, %s markers, %s quarantined",
        index.objects,
        len(index.records),
        sum(len(v) for v in index.digests.values()),
        len(index.quarantined),
    )
    return index
