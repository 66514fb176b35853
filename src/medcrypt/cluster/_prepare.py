"""Everything the archive job checks and loads before any case is touched.

:func:`prepare_job` reads and verifies the model and the key (and that they fit), settles the
PGD settings against the key, reads the manifest (or discovers one under the source), and
lists dest once into the ledger index; the result is a :class:`JobInputs`. From it,
:func:`_states` yields each case's starting :class:`CaseState` and :func:`_stage_context`
the run-wide settings of the stages. Both the run (``_job``) and the dry run (``_plan``) start
here; nothing in this module needs Ray.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcrypt._private_files import write_private
from medcrypt.cluster._config import JobConfig
from medcrypt.cluster._ledger import DestIndex, scan_dest, summary_key
from medcrypt.cluster._manifest import Manifest
from medcrypt.cluster._stages import CaseState, StageContext
from medcrypt.errors import ConfigError, MedcryptError
from medcrypt.storage import ObjectStore, open_store, split_uri

__all__ = ["JobInputs", "prepare_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInputs:
    """What :func:`prepare_job` checked and loaded before any work starts."""

    config: JobConfig
    run_id: str
    model_blob: bytes
    model_hash: str
    model_arch: str
    class_names: tuple[str, ...]
    key: Any  # EncryptionKey
    key_fingerprint: str
    #: the PGD settings this run uses: the key's, with what the job may change (see
    #: ``processing.settings_from_key``); ``pgd_overrides`` = fields overridden against the key
    pgd: Any  # PGDSettings
    pgd_overrides: dict[str, dict[str, Any]]
    rows: Manifest  # re-iterable stream of ManifestRow, with len()
    dest: ObjectStore
    index: DestIndex
    #: folders under the source that ``layout`` discovery left out, each ``"folder: why"``
    #: (at most ``_discover.MAX_REASONS``), and how many there were in all
    skipped_folders: tuple[str, ...] = ()
    skipped_folders_total: int = 0


def _new_run_id() -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def _read_local_or_store(uri: str, endpoint_url: str | None, *, what: str) -> bytes:
    """Bytes of a model/key given as a local path or an s3:// URI."""
    try:
        root, key = split_uri(uri)
        return open_store(root, endpoint_url=endpoint_url).get(key)
    except MedcryptError as exc:
        raise ConfigError(f"cannot read the {what}: {exc}", uri=uri) from exc


def _normalise_root(uri: str) -> str:
    return uri.rstrip("/")


def _locate(value: str, source: str | None) -> tuple[str, str, str]:
    """(store root, key, full URI) of a manifest entry (a key under source, or a URI)."""
    if source:
        return source, value, f"{_normalise_root(source)}/{value}"
    folder = value.endswith("/")
    root, key = split_uri(value.rstrip("/") if folder else value)
    return root, key + ("/" if folder else ""), value


def _read_rows(
    config: JobConfig, class_names: tuple[str, ...]
) -> tuple[Manifest, tuple[str, ...], int]:
    """The checked manifest, or (``layout`` set) one discovered from the source right now,
    with the folders discovery left out (``"folder: why"``) and their number."""
    from medcrypt.cluster._discover import discover
    from medcrypt.cluster._manifest import read_manifest

    endpoint = config.endpoint_url
    if config.manifest is not None:
        manifest = read_manifest(
            config.manifest, source=config.source, class_names=class_names, endpoint_url=endpoint
        )
        return manifest, (), 0
    assert config.layout is not None  # JobConfig requires manifest or layout
    fd, tmp = tempfile.mkstemp(prefix="medcrypt-discovered-", suffix=".csv")
    os.close(fd)
    found = discover(
        open_store(config.source, endpoint_url=endpoint, max_pool=config.max_pool),
        layout=config.layout,
        out=tmp,
        class_names=class_names,
    )
    # read_manifest re-reads the file on every iteration: keep it until the process ends
    atexit.register(_unlink_quietly, tmp)
    logger.info("discovered %s cases (%s folders skipped)", found.cases, found.skipped)
    if found.skipped:
        logger.warning(
            "%s folder(s) under %s left out, not valid %s cases: %s",
            found.skipped,
            config.source,
            config.layout,
            "; ".join(found.reasons[:5]) + (" ..." if found.skipped > 5 else ""),
        )
    manifest = read_manifest(tmp, source=config.source, class_names=class_names)
    return manifest, found.reasons, found.skipped


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def prepare_job(config: JobConfig) -> JobInputs:
    """Validate and load everything the job needs; raise before any case is touched.

    Raises:
        ConfigError / ManifestError: bad config, manifest, URIs, dest inside source.
        ModelError / EncryptionKeyError: unreadable model or key, or they do not fit.
    """
    from medcrypt.processing import EncryptionKey, load_checkpoint, settings_from_key

    endpoint = config.endpoint_url
    # model: read once (also what the actors get), verified by load_checkpoint
    model_blob = _read_local_or_store(str(config.model), endpoint, what="model checkpoint")
    with tempfile.TemporaryDirectory(prefix="medcrypt-check-") as tmp:
        mpath = Path(tmp) / "model.pt"
        mpath.write_bytes(model_blob)
        loaded = load_checkpoint(mpath, map_location="cpu")
        if "://" in str(config.key):
            kpath = Path(tmp) / "key.json"
            write_private(kpath, _read_local_or_store(str(config.key), endpoint, what="key"))
            key = EncryptionKey.load(kpath)
        else:
            key = EncryptionKey.load(config.key)
    key.check_model(loaded.num_classes, loaded.class_names)
    key.check_surrogate([loaded.content_hash])
    pgd, overrides = settings_from_key(
        key.pgd, config.pgd.given(), override=config.override_key_pgd
    )
    if overrides:
        logger.warning(
            "PGD settings overridden against key %s: %s", key.fingerprint, sorted(overrides)
        )
    rows, skipped_folders, skipped_total = _read_rows(config, loaded.class_names)
    dest = open_store(config.dest, endpoint_url=endpoint, max_pool=config.max_pool)
    index = scan_dest(dest)
    if config.run_id is not None and config.run_id in index.runs:
        raise ConfigError(
            f"run id {config.run_id!r} was used before in this dest (its summary is "
            f"{summary_key(config.run_id)}); give another --run-id, or none for a new one",
            field="run_id",
        )
    return JobInputs(
        config=config,
        run_id=config.run_id or _new_run_id(),
        model_blob=model_blob,
        model_hash=loaded.content_hash,
        model_arch=loaded.arch,
        class_names=tuple(loaded.class_names),
        key=key,
        key_fingerprint=key.fingerprint,
        pgd=pgd,
        pgd_overrides=overrides,
        rows=rows,
        dest=dest,
        index=index,
        skipped_folders=skipped_folders,
        skipped_folders_total=skipped_total,
    )


def _states(inputs: JobInputs) -> Iterator[CaseState]:
    source = inputs.config.source
    for r in inputs.rows:
        image_root, image_key, image_uri = _locate(r.image, source)
        mask_root, mask_key, mask_uri = _locate(r.mask, source)
        yield CaseState(
            case_id=r.case_id,
            image_uri=image_uri,
            mask_uri=mask_uri,
            image_root=image_root,
            image_key=image_key,
            mask_root=mask_root,
            mask_key=mask_key,
            label_given=r.label_index,
            prior_digests=inputs.index.prior_digests(r.case_id),
            has_record=inputs.index.has_record(r.case_id),
            was_quarantined=inputs.index.was_quarantined(r.case_id),
            case_objects=inputs.index.objects_of(r.case_id),
            claims=inputs.index.claims_of(r.case_id),
        )


def _stage_context(inputs: JobInputs) -> StageContext:
    c = inputs.config
    return StageContext(
        run_id=inputs.run_id,
        dest=c.dest,
        endpoint_url=c.endpoint_url,
        max_pool=c.max_pool,
        formats=tuple(c.formats),
        write_originals=bool(c.write_originals),
        eps=float(inputs.pgd.eps),
        key_fingerprint=inputs.key_fingerprint,
        model_hash=inputs.model_hash,
        model_arch=inputs.model_arch,
        class_names=inputs.class_names,
        pgd=inputs.pgd.model_dump(mode="json"),
        pgd_overrides=inputs.pgd_overrides,
        tumour_labels=None if c.tumour_labels is None else tuple(c.tumour_labels),
        slice_fallback=c.slice_fallback,
        redo=c.redo,
        claim_lease_s=float(c.claim_lease_s),
        series_description="medcrypt protected (adversarial data encryption)",
    )
