"""What a released file may say about the key: ONE policy for every writer.

A release (the archive job's records and run summaries, ``encrypt-slices``' records and
summary, the protection report) names the key only by what identifies it or describes the
budget, never by what would let a reader undo the protection:

- allowed (:data:`RELEASABLE_KEY_FIELDS`): the key's **fingerprint**, the **number of
  targets** a released image was pushed toward, and the **PGD settings** it was made with
  (budget ``eps``, ``step``, ``iters``, ``best_iterate``, ``precision``, ``channels_last``),
  plus any PGD field a job overrode against the key (``pgd_overrides``);
- never (:data:`SECRET_KEY_FIELDS`): the targets (the class mapping), the combiner and its
  parameters, the seed they were drawn from, the secret, ``allow_fixed_points``. Knowing the
  mapping lets anyone remap a model's predictions (the paper's "Orig+P" setting); the
  combiner and its ratios are what make the mapping hard to guess.

Writers build the key part of what they release with :func:`key_release` and pass every
document through :func:`check_release` (or :func:`release_json`) before it is written, so a
field added later that names a secret is refused instead of shipped. Pure Python: no torch
is needed to use it (``medcrypt.study`` imports nothing from processing, and its packets
carry none of the key's fields).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from medcrypt.errors import ConfigError
from medcrypt.processing.protection._settings import PGDSettings

__all__ = [
    "PROTECTION_PGD_FIELDS",
    "RELEASABLE_KEY_FIELDS",
    "SECRET_KEY_FIELDS",
    "ReleaseError",
    "check_release",
    "key_release",
    "release_json",
    "settings_from_key",
]

#: the only key-derived fields a released document may carry
RELEASABLE_KEY_FIELDS = ("key_fingerprint", "n_targets", "pgd", "pgd_overrides")
#: key fields that never leave the key file: a released mapping key with one of these names
#: is refused. The key's ``seed`` is as secret, but "seed" also names public seeds (training,
#: study order), so it is kept out by construction (:func:`key_release` never copies it).
SECRET_KEY_FIELDS = (
    "targets",
    "combiner",
    "combiner_params",
    "secret",
    "allow_fixed_points",
)
#: PGD fields that set the protection (the data owner's decision, fixed by the key). The
#: other PGD fields (``precision``, ``channels_last``) choose how the same attack is computed.
PROTECTION_PGD_FIELDS = tuple(
    f for f in PGDSettings.model_fields if f not in ("precision", "channels_last")
)


def settings_from_key(
    key_pgd: PGDSettings,
    requested: Mapping[str, Any],
    *,
    override: bool = False,
) -> tuple[PGDSettings, dict[str, dict[str, Any]]]:
    """The PGD settings a job runs with: the key's, and what the job may change.

    The key holds the data owner's protection settings (:data:`PROTECTION_PGD_FIELDS`). A
    job may repeat them, or choose how they are computed (``precision``,
    ``channels_last``); a requested protection field that differs from the key's is
    refused unless ``override`` is true, and then returned in the overrides so that every
    record says so.

    Args:
        key_pgd: ``EncryptionKey.pgd``.
        requested: the PGD fields the job set (fields left unset are absent or None).
        override: allow protection fields that contradict the key.

    Returns:
        (settings, overrides): ``overrides`` maps each overridden field to
        ``{"key": value, "job": value}``; empty when the key's settings hold.

    Raises:
        ConfigError: a protection field contradicts the key and ``override`` is false.
    """
    given = {k: v for k, v in requested.items() if v is not None}
    unknown = sorted(set(given) - set(PGDSettings.model_fields))
    if unknown:
        raise ConfigError(f"unknown PGD settings {unknown}", field="pgd")
    base = key_pgd.model_dump()
    clash = {
        k: {"key": base.get(k), "job": v}
        for k, v in given.items()
        if k in PROTECTION_PGD_FIELDS and v != base.get(k)
    }
    if clash and not override:
        parts = "; ".join(
            f"--pgd-{k.replace('_', '-')} (pgd.{k}) is {c['job']}, the key's is {c['key']}"
            for k, c in sorted(clash.items())
        )
        raise ConfigError(
            f"the job's PGD settings contradict the key's: {parts}. The key holds the data "
            "owner's protection settings: leave these out to use the key's, or pass "
            "--override-key-pgd (override_key_pgd: true) to run with yours, recorded as "
            "pgd_overrides in every record",
            field="pgd",
        )
    return PGDSettings(**{**base, **given}), clash


class ReleaseError(ValueError):
    """A document about to be released carries a key secret (a programming error)."""


def key_release(
    fingerprint: str,
    pgd: BaseModel | Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The key part of a released document: fingerprint, PGD settings, overrides (if any).

    Args:
        fingerprint: ``EncryptionKey.fingerprint`` (a keyed hash; publishable).
        pgd: the PGD settings the images were made with (``PGDSettings`` or its dump).
        overrides: PGD fields a job set against the key, ``{field: {"key": v, "job": v}}``.
    """
    settings = pgd.model_dump(mode="json") if isinstance(pgd, BaseModel) else dict(pgd)
    out: dict[str, Any] = {"key_fingerprint": str(fingerprint), "pgd": settings}
    if overrides:
        out["pgd_overrides"] = {str(k): dict(v) for k, v in overrides.items()}
    check_release(out, where="key_release")
    return out


def _walk(obj: Any, path: str) -> Iterable[tuple[str, Any, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield path, k, v
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")


def check_release(
    document: BaseModel | Mapping[str, Any] | list[Any],
    *,
    where: str,
    forbidden_text: Iterable[str] = (),
) -> None:
    """Refuse a document that names a secret key field, or holds one of ``forbidden_text``.

    Args:
        document: a pydantic model or JSON-compatible data about to be written.
        where: what it is (for the message), e.g. ``"record of case c1"``.
        forbidden_text: strings that must not occur anywhere in the document (e.g. the key's
            secret, when the writer holds the key).

    Raises:
        ReleaseError: a mapping key in :data:`SECRET_KEY_FIELDS`, or a forbidden string.
    """
    data = document.model_dump(mode="json") if isinstance(document, BaseModel) else document
    for path, k, _ in _walk(data, "$"):
        if str(k) in SECRET_KEY_FIELDS:
            raise ReleaseError(
                f"{where}: refusing to release the key field {k!r} (at {path}); a release may "
                f"carry only {', '.join(RELEASABLE_KEY_FIELDS)}"
            )
    needles = [t for t in forbidden_text if t]
    if needles:
        text = json.dumps(data)
        for t in needles:
            if t in text:
                raise ReleaseError(f"{where}: refusing to release a secret value")


def release_json(
    document: BaseModel | Mapping[str, Any],
    *,
    where: str,
    forbidden_text: Iterable[str] = (),
) -> bytes:
    """``document`` as indented JSON bytes, after :func:`check_release`."""
    check_release(document, where=where, forbidden_text=forbidden_text)
    if isinstance(document, BaseModel):
        return (document.model_dump_json(indent=2) + "\n").encode()
    return (json.dumps(document, indent=2) + "\n").encode()
