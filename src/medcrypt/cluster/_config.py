"""The archive job's configuration: one frozen pydantic model, from YAML and/or CLI flags.

Everything that can be checked without touching data is checked when the config is built,
before any work starts: URIs are well formed, dest neither equals nor overlaps the source,
local key / model / manifest files exist, formats and layouts are known, the actor pool range
is sensible. Problems raise :class:`~medcrypt.errors.ConfigError` naming the field (and the
file the value came from) via ``_config_load`` (:func:`load_job_config` from YAML and flags,
:func:`job_config_from_mapping`).

Manifest or discovery: give ``manifest`` (a CSV/JSONL file, see ``_manifest``) or ``layout``
(``brats`` / ``case-folders``); with ``layout`` alone the job discovers the cases under
``source`` at the start of every run, so a nightly run picks up new cases by itself. Giving
both is refused (it would be unclear which one wins).

Paths: local paths are made absolute when the config is built (Ray workers do not share the
driver's working directory). Relative paths written in a YAML file are relative to that file's
folder; relative paths given as CLI flags are relative to the current directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator, model_validator

from medcrypt.cluster._discover import Layout
from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError
from medcrypt.processing.protection._settings import ProtectionMode
from medcrypt.storage import S3Uri, is_s3_uri, local_path, parse_s3_uri

__all__ = ["OUTPUT_FORMATS", "JobConfig", "OutputFormat", "PGDRequest"]

OutputFormat = Literal["png", "nifti", "dicom"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$")
#: Fields holding a location: normalised (s3 canonical form / absolute path).
_LOCATION_FIELDS = ("source", "dest", "manifest", "key", "model")


class PGDRequest(StrictModel):
    """The PGD settings a job asks for: every field optional, unset ones come from the key.

    The key fixes the protection (budget, steps, mode, norm, foreground, crafting): a job may
    repeat those values, and differ from them only with ``override_key_pgd``. ``precision``
    and ``channels_last`` choose how PGD is computed and may be set freely (see
    :func:`medcrypt.processing.settings_from_key`).
    """

    eps: float | None = Field(default=None, gt=0.0)
    step: float | None = Field(default=None, gt=0.0)
    iters: int | None = Field(default=None, ge=0)
    best_iterate: bool | None = None
    precision: Literal["auto", "fp32", "bf16"] | None = None
    channels_last: bool | None = None
    mode: ProtectionMode | None = None
    norm: Literal["l2", "linf"] | None = None
    foreground: bool | None = None
    restarts: int | None = Field(default=None, ge=1)
    augment: float | None = Field(default=None, ge=0.0, le=1.0)
    shortcut_patch: int | None = Field(default=None, ge=1)
    shortcut_share: float | None = Field(default=None, gt=0.0, lt=1.0)
    linf_cap: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="per-pixel cap beside eps, in [0,1] pixel units [default: the key's; "
        "another value needs --override-key-pgd]",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_settings(cls, data: Any) -> Any:
        # a full PGDSettings (as code that built JobConfig(pgd=PGDSettings(...)) passes) asks
        # for each of its values
        return data.model_dump() if isinstance(data, BaseModel) else data

    def given(self) -> dict[str, Any]:
        """The fields this request sets (not None)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class JobConfig(StrictModel):
    """Everything ``medcrypt encrypt`` / ``run_job`` needs; see the module docstring."""

    source: str = Field(description="archive root to read: s3://bucket/prefix or a local folder")
    dest: str = Field(
        description="where outputs, records and run summaries go; must not overlap source"
    )
    manifest: str | None = Field(
        default=None,
        description="CSV/JSONL manifest (path or s3:// URI); omit and set layout to discover",
    )
    layout: Layout | None = Field(
        default=None,
        description="discover cases under source with this layout (brats, case-folders) "
        "when no manifest is given",
    )
    key: str = Field(description="encryption key file (path or s3:// URI)")
    model: str = Field(description="model checkpoint (path or s3:// URI)")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph); default AWS"
    )
    max_pool: int = Field(default=32, ge=1, le=1024, description="S3 connections per process")
    pgd: PGDRequest = Field(
        default_factory=lambda: PGDRequest(),
        description="PGD settings; unset ones come from the key (see PGDRequest)",
    )
    override_key_pgd: bool = Field(
        default=False,
        description="run with pgd eps/step/iters/best_iterate that contradict the key's "
        "(refused otherwise); every record lists them under pgd_overrides",
    )
    formats: tuple[OutputFormat, ...] = Field(
        default=("png",), description="output formats, comma separated: png, nifti, dicom"
    )
    tumour_labels: tuple[int, ...] | None = Field(
        default=None,
        description="mask values that count as tumour, comma separated (default: any > 0)",
    )
    slice_fallback: Literal["error", "largest_brain"] = Field(
        default="error",
        description="empty tumour mask: quarantine the case (error) or use the largest brain "
        "slice (largest_brain)",
    )
    write_originals: bool = Field(
        default=False, description="also write unprotected slices, under dest/_originals/"
    )
    run_id: str | None = Field(
        default=None,
        description="name of this run under dest/_runs/ (default: time + random); a name "
        "already used in dest is refused",
    )
    redo: Literal["changed", "quarantined", "all"] | None = Field(
        default=None,
        description="also redo cases whose key, model or settings differ from their record "
        "(changed), cases quarantined before with these inputs (quarantined), or every case "
        "(all); default: only new, changed-source and incomplete cases",
    )
    claim_lease_s: float = Field(
        default=300.0,
        ge=5.0,
        description="seconds without a heartbeat after which another run's claim on a case "
        "is taken over (a killed run)",
    )
    num_gpus: float = Field(
        default=0.0, ge=0.0, description="GPUs per PGD actor (1 on GPU nodes, 0 on CPU only)"
    )
    actor_cpus: float = Field(default=1.0, gt=0.0, description="CPUs per PGD actor")
    fetch_cpus: float = Field(default=1.0, gt=0.0, description="CPUs per fetch / write task")
    min_actors: int = Field(default=1, ge=1, description="smallest PGD actor pool")
    max_actors: int = Field(default=1, ge=1, description="largest PGD actor pool")
    batch_size: int = Field(default=8, ge=1, le=4096, description="slices per PGD batch")
    actor_start_timeout_s: float = Field(
        default=600.0,
        gt=0.0,
        description="seconds to wait for min_actors to start (Ray's wait_for_min_actors_s)",
    )

    # -- fields --------------------------------------------------------------------------------

    @field_validator("source", "dest", "manifest", "key", "model")
    @classmethod
    def _normalise_location(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return None
        field = info.field_name
        try:
            if is_s3_uri(v):
                parsed = parse_s3_uri(v, field=field)
                if field in ("manifest", "key", "model") and (not parsed.prefix or v.endswith("/")):
                    raise ValueError(f"expected an s3:// URI naming one object, got {v!r}")
                return parsed.uri
            path = local_path(v, field=field)
        except ConfigError as exc:
            raise ValueError(exc.message) from exc
        if field in ("key", "model", "manifest") and not path.is_file():
            found = "a folder" if path.is_dir() else "nothing"
            raise ValueError(f"expected an existing file at {str(path)!r}, found {found}")
        if field == "source" and path.exists() and not path.is_dir():
            raise ValueError(f"expected a folder at {str(path)!r}, found a file")
        return str(path)

    @field_validator("dest")
    @classmethod
    def _dest_apart_from_source(cls, v: str, info: Any) -> str:
        # a field validator (not a model one) so that this is reported with the other fields
        source = info.data.get("source")
        if source is not None:
            overlap = _overlap(source, v)
            if overlap:
                raise ValueError(overlap)
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not _ENDPOINT.match(v):
            raise ValueError(f"expected an http(s)://host[:port] URL, got {v!r}")
        return v

    @field_validator("formats", mode="before")
    @classmethod
    def _split_formats(cls, v: Any) -> Any:
        v = _split_commas(v)
        if isinstance(v, list | tuple):
            if not v:
                raise ValueError(f"expected at least one of {', '.join(OUTPUT_FORMATS)}")
            dupes = sorted({x for x in v if list(v).count(x) > 1}, key=str)
            if dupes:
                raise ValueError(f"expected each format once, got {dupes} repeated")
        return v

    @field_validator("tumour_labels", mode="before")
    @classmethod
    def _split_labels(cls, v: Any) -> Any:
        return _split_commas(v)

    @field_validator("tumour_labels")
    @classmethod
    def _check_labels(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("expected at least one mask value (or leave it out for any > 0)")
        bad = [x for x in v if x < 1]
        if bad:
            raise ValueError(f"expected mask values >= 1 (0 is background), got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, v: str | None) -> str | None:
        if v is not None and not _RUN_ID.match(v):
            raise ValueError(
                f"expected 1-64 letters, digits, '.', '_' or '-' (a folder name), got {v!r}"
            )
        return v

    @field_validator("num_gpus")
    @classmethod
    def _check_gpus(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"expected a fraction <= 1 or a whole number of GPUs, got {v}")
        return v

    # -- across fields -------------------------------------------------------------------------

    @model_validator(mode="after")
    def _check_together(self) -> JobConfig:
        if self.min_actors > self.max_actors:
            raise ValueError(
                f"min_actors ({self.min_actors}) must not exceed max_actors ({self.max_actors})"
            )
        if self.manifest is None and self.layout is None:
            raise ValueError(
                "expected either manifest (a CSV/JSONL file) or layout (brats, case-folders) "
                "to discover the cases under source, got neither"
            )
        if self.manifest is not None and self.layout is not None:
            raise ValueError(
                "expected either manifest or layout, got both (remove layout to use the "
                "manifest, or manifest to discover)"
            )
        return self

    @property
    def source_is_s3(self) -> bool:
        return is_s3_uri(self.source)

    @property
    def dest_is_s3(self) -> bool:
        return is_s3_uri(self.dest)


def _split_commas(v: Any) -> Any:
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    if isinstance(v, int) and not isinstance(v, bool):
        return [v]
    return v


def _overlap(source: str, dest: str) -> str | None:
    """Why dest and source overlap, or None when they are apart."""
    if is_s3_uri(source) != is_s3_uri(dest):
        return None
    if is_s3_uri(source):
        s, d = parse_s3_uri(source), parse_s3_uri(dest)
        if s.bucket != d.bucket:
            return None
        if _prefix_within(d, s):
            return (
                f"expected a dest outside the source, got {dest!r}, which "
                f"{'is' if d.prefix == s.prefix else 'lies inside'} the source {source!r}"
            )
        if _prefix_within(s, d):
            return f"expected a dest outside the source, got {dest!r}, which contains the source"
        return None
    sp, dp = Path(source), Path(dest)
    if dp == sp:
        return f"expected a dest outside the source, got {dest!r}, which is the source"
    if dp.is_relative_to(sp):
        return f"expected a dest outside the source, got {dest!r}, which lies inside {source!r}"
    if sp.is_relative_to(dp):
        return f"expected a dest outside the source, got {dest!r}, which contains the source"
    return None


def _prefix_within(inner: S3Uri, outer: S3Uri) -> bool:
    return (
        not outer.prefix
        or inner.prefix == outer.prefix
        or inner.prefix.startswith(outer.prefix + "/")
    )
