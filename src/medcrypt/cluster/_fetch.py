"""Stage 1 of the archive job, a CPU task: stat, ledger-check, download and slice a case.

:func:`fetch_batch` stats the case's sources, skips it if the ledger says it is done for
these versions and this key (else claims it), downloads to a temp dir and chooses the slice.
An error about a downloaded copy is retold about its source URI (:func:`_as_source_error`),
so no record ever names a worker's temp path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medcrypt.cluster._commit import settle
from medcrypt.cluster._records import SourceObject, source_digest
from medcrypt.cluster._rows import (
    PENDING,
    SKIPPED,
    CaseState,
    StageContext,
    _fail,
    _pack,
    _store,
    _unpack,
)
from medcrypt.errors import ImageFormatError, JobError, MedcryptError, ObjectNotFoundError
from medcrypt.storage import ObjectInfo, ObjectStore

__all__ = ["fetch_batch"]

logger = logging.getLogger(__name__)


def _stat_source(
    store: ObjectStore, key: str, *, role: str, uri: str, case_id: str
) -> tuple[SourceObject, list[ObjectInfo] | None]:
    """Version of one input; a missing object that is a folder is a DICOM series."""
    try:
        if key.endswith("/"):
            raise ObjectNotFoundError("a series folder", operation="stat", uri=uri)
        info = store.stat(key)
        return SourceObject(role=role, uri=uri, version=info.version), None  # type: ignore[arg-type]
    except ObjectNotFoundError as exc:
        files = list(store.list(key.rstrip("/") + "/"))
        if not files:
            raise ObjectNotFoundError(
                f"{role}: expected an object or a DICOM series folder, found neither",
                operation="stat",
                case_id=case_id,
                uri=uri,
            ) from exc
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.key}\0{f.version}\n".encode())
        version = f"series:{len(files)}:{h.hexdigest()[:32]}"
        return SourceObject(role=role, uri=uri, version=version), files  # type: ignore[arg-type]


def _local_copy(key: str, files: list[ObjectInfo] | None, into: Path, role: str) -> Path:
    """Where :func:`_download` puts an input: ``into/role/<name>``, or a series folder."""
    if files is None:
        return into / role / (key.rsplit("/", 1)[-1] or role)
    return into / role / "series"


def _download(store: ObjectStore, key: str, files: list[ObjectInfo] | None, target: Path) -> None:
    """Copy one input (an object, or every file of a series) to ``target`` (see _local_copy)."""
    if files is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(key, target)
        return
    base = key.rstrip("/") + "/"
    for f in files:
        file = target.joinpath(*f.key[len(base) :].split("/"))
        file.parent.mkdir(parents=True, exist_ok=True)
        store.get_to_file(f.key, file)


# -- stage 1: fetch + decode (CPU task) --------------------------------------------------------


def _to_source(text: str, copies: Mapping[str, str], tmp: str) -> str:
    """``text`` with every path of a downloaded copy replaced by its source URI.

    ``copies`` maps each local copy (a file, or a DICOM series folder whose files keep their
    relative names) to its source URI; anything else under ``tmp`` is named generically.
    """
    roots = {tmp, os.path.realpath(tmp)}
    pairs: list[tuple[str, str]] = []
    for local, uri in copies.items():
        for root in roots:
            pairs.append((os.path.join(root, os.path.relpath(local, tmp)), uri))
    # longest first, so a series folder's files map before the folder's own prefix
    for local, uri in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(local, uri)
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root, "<downloaded copy>")
    return text


def _as_source_error(
    exc: BaseException, copies: Mapping[str, str], tmp: str, state: CaseState
) -> MedcryptError:
    """The error about a downloaded copy, retold about the source object (URI, not temp path).

    A medcrypt error keeps its type (so transient storage errors stay retryable); any other
    error becomes an :class:`ImageFormatError` naming the original type.
    """
    import copy

    if isinstance(exc, MedcryptError):
        err = copy.copy(exc)
        err.message = _to_source(exc.message, copies, tmp)
        err.uri = None if exc.uri is None else _to_source(exc.uri, copies, tmp)
        err.args = (err.message,)
        if err.case_id is None:
            err.case_id = state.case_id
        return err
    return ImageFormatError(
        f"{type(exc).__name__}: {_to_source(str(exc), copies, tmp)}",
        case_id=state.case_id,
        uri=state.image_uri,
    )


def fetch_batch(batch: dict[str, np.ndarray], *, ctx: StageContext) -> dict[str, np.ndarray]:
    """Stat, ledger-check, download and slice every pending case of the batch."""
    from medcrypt.medical import load_case_slice

    out: list[tuple[str, CaseState]] = []
    for status, state in _unpack(batch):
        if status != PENDING:
            out.append((status, state))
            continue
        try:
            t0 = time.perf_counter()
            img_store, img_key = (
                _store(state.image_root, ctx.endpoint_url, ctx.max_pool),
                state.image_key,
            )
            msk_store, msk_key = (
                _store(state.mask_root, ctx.endpoint_url, ctx.max_pool),
                state.mask_key,
            )
            img_src, img_files = _stat_source(
                img_store, img_key, role="image", uri=state.image_uri, case_id=state.case_id
            )
            msk_src, msk_files = _stat_source(
                msk_store, msk_key, role="mask", uri=state.mask_uri, case_id=state.case_id
            )
            state.sources = [img_src, msk_src]
            state.digest = source_digest(state.sources, ctx.key_fingerprint)
            # skip / changed / quarantined before / claimed elsewhere, from the listing; a
            # case that needs work is claimed here (a poison case is not rerun nightly)
            stop = settle(state, ctx, _store(ctx.dest, ctx.endpoint_url, ctx.max_pool))
            if stop is not None:
                state.error_message = stop[1] if stop[0] != SKIPPED else ""
                out.append((stop[0], state))
                continue
            with tempfile.TemporaryDirectory(prefix="medcrypt-fetch-") as tmp:
                image_path = _local_copy(img_key, img_files, Path(tmp), "image")
                mask_path = _local_copy(msk_key, msk_files, Path(tmp), "mask")
                copies = {
                    str(image_path): state.image_uri.rstrip("/"),
                    str(mask_path): state.mask_uri.rstrip("/"),
                }
                try:
                    _download(img_store, img_key, img_files, image_path)
                    _download(msk_store, msk_key, msk_files, mask_path)
                    t1 = time.perf_counter()
                    slice_ = load_case_slice(
                        image_path,
                        mask_path,
                        case_id=state.case_id,
                        tumour_labels=ctx.tumour_labels,
                        fallback=ctx.slice_fallback,  # type: ignore[arg-type]
                    )
                except Exception as exc:
                    raise _as_source_error(exc, copies, tmp, state) from exc
            arr = np.asarray(slice_.array, dtype=np.float32)
            if arr.ndim != 2 or not np.isfinite(arr).all():
                raise JobError(
                    f"expected a finite 2D slice, got shape {arr.shape}",
                    case_id=state.case_id,
                    uri=state.image_uri,
                )
            state.original = np.clip(arr, 0.0, 1.0)
            state.slice_ = slice_
            t2 = time.perf_counter()
            state.timings["fetch_s"] = t1 - t0
            state.timings["decode_s"] = t2 - t1
            out.append((PENDING, state))
        except Exception as exc:  # per case: any failure becomes a quarantine row
            out.append(_fail(state, "fetch", exc))
    return _pack(out)
