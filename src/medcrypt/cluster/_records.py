"""Records the archive job writes under dest: per case, per quarantined case, per run.

Every record is a frozen pydantic model (``extra="forbid"``) so a reader can validate what a
job wrote. Secrets never appear: the key is referenced by its fingerprint, the model by its
content hash.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import platform
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from medcrypt.config import StrictModel

__all__ = [
    "CaseRecord",
    "CaseTimings",
    "OutputObject",
    "ProtectionMetrics",
    "QuarantineRecord",
    "SliceInfo",
    "SourceObject",
    "software_versions",
    "source_digest",
    "utc_now",
]

SCHEMA_VERSION = 1


def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds precision."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class SourceObject(StrictModel):
    """One input object of a case and the version it had when it was read.

    ``version`` is the object's ETag where the store has one, else ``size+mtime``; for a DICOM
    series folder it is a digest over every file's key and version.
    """

    role: Literal["image", "mask"]
    uri: str
    version: str


def source_digest(sources: Iterable[SourceObject], key_fingerprint: str) -> str:
    """Identity of "this case's inputs, protected with this key": the ledger's skip test."""
    h = hashlib.sha256()
    for s in sorted(sources, key=lambda s: s.role):
        h.update(f"{s.role}\0{s.uri}\0{s.version}\n".encode())
    h.update(key_fingerprint.encode())
    return h.hexdigest()[:32]


class SliceInfo(StrictModel):
    """Which axial slice was chosen, and why (mirrors ``medical.SliceChoice``)."""

    axis: int
    stored_index: int
    canonical_index: int
    area_mm2: float
    tied_indices: tuple[int, ...]
    rule: str
    fallback: str | None
    world_position: tuple[float, float, float]
    shape: tuple[int, int]


class ProtectionMetrics(StrictModel):
    """Distortion of the written (quantised) image against the original slice."""

    l2: float
    linf: float
    psnr: float
    ssim: float
    #: PSNR / SSIM over the anatomy (foreground mask) only; None where infinite (unchanged)
    #: and in records written before these fields existed
    psnr_foreground: float | None = None
    ssim_foreground: float | None = None
    eps: float
    #: the per-pixel cap the key held beside eps (``PGDSettings.linf_cap``); None when the
    #: key has none, and in records written before the cap existed. ``linf`` is within it.
    linf_cap: float | None = None
    #: whether the written image is within eps (and within ``linf_cap`` where there is one);
    #: the write stage refuses a case otherwise, so a record always says True
    within_eps: bool
    target_success: float
    #: how many secret targets this case was pushed toward. The targets themselves are the
    #: key's class mapping and stay out of every record (they would let anyone undo the
    #: protection by remapping a model's predictions, the paper's "Orig+P" setting).
    n_targets: int


class OutputObject(StrictModel):
    """An object written under dest, identified by its content."""

    key: str
    format: str
    sha256: str
    size: int
    #: the store's version of the object as written (ETag, or size:mtime): a rerun compares it
    #: with its listing of dest; ``None`` in records written before this field existed
    version: str | None = None


class CaseTimings(StrictModel):
    """Seconds spent per stage for this case (PGD is this case's share of its batch)."""

    fetch_s: float = 0.0
    decode_s: float = 0.0
    pgd_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0


class CaseRecord(StrictModel):
    """``<case>/record.json``: everything that made this case's protected image."""

    schema_version: Literal[1] = 1
    kind: Literal["case"] = "case"
    case_id: str
    run_id: str
    created_at: str
    sources: tuple[SourceObject, ...]
    source_digest: str
    #: ``inputs.key.model.settings`` of the ledger marker written with this record (see
    #: ``_ledger``): what a rerun compares to decide skip / changed; empty in older records
    ledger_mark: str = ""
    slice: SliceInfo
    window: tuple[float, float]
    label: int
    label_name: str
    label_source: Literal["given", "predicted"]
    #: the key by fingerprint only: no targets, combiner or combiner parameters (all secret)
    key_fingerprint: str
    model_hash: str
    model_arch: str
    #: the PGD settings this image was made with: the key's unless overridden, see below
    pgd: dict[str, Any]
    #: PGD fields a job set against the key (``--override-key-pgd``):
    #: ``{field: {"key": value, "job": value}}``; empty when the key's settings were used
    pgd_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: what the PGD ran with: device, dtype ("bf16" / "fp32": ``precision="auto"`` resolves by
    #: hardware) and memory layout; empty in records written before this field existed
    compute: dict[str, str | bool] = Field(default_factory=dict)
    metrics: ProtectionMetrics
    outputs: tuple[OutputObject, ...]
    originals: tuple[OutputObject, ...] = ()
    timings: CaseTimings
    software: dict[str, str]


class QuarantineRecord(StrictModel):
    """``_quarantine/<case>.json``: why a case was not protected in this run."""

    schema_version: Literal[1] = 1
    kind: Literal["quarantine"] = "quarantine"
    case_id: str
    run_id: str
    created_at: str
    stage: Literal["fetch", "encrypt", "write"]
    error_type: str
    message: str
    sources: tuple[SourceObject, ...] = ()
    key_fingerprint: str
    attempts: int = Field(default=1, ge=1)
    software: dict[str, str]


_PACKAGES = ("medcrypt", "torch", "ray", "numpy", "nibabel", "pydicom", "SimpleITK", "boto3")


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape an output."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
