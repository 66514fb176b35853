"""EncryptionKey: the secret of a protected archive (targets, combiner parameters, PGD, seed).

The key file is a secret: it is written owner-only (mode 0o600, created with that mode so it is
never readable by others even briefly). Outputs refer to a key only by its *fingerprint*, a
keyed hash (HMAC-SHA256 under the key's random ``secret``) of everything else in the key, so it
identifies the key without revealing targets or parameters, and nobody without the key file can
forge or check a guess against it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets as _secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, SecretStr, ValidationError, field_serializer, model_validator

from medcrypt._private_files import write_private
from medcrypt.config import StrictModel
from medcrypt.errors import EncryptionKeyError
from medcrypt.processing.protection._combiners import (
    COMBINERS,
    random_params,
    validate_combiner,
)
from medcrypt.processing.protection._key_draw import draw_targets
from medcrypt.processing.protection._settings import PGDSettings

__all__ = ["CombinerName", "EncryptionKey"]

#: PGD fields that version 2 keys added, with the values a version 1 key file means (the
#: paper's plain whole-slice L2 PGD). Version 1 keys load with these, and keep their
#: fingerprint: it is computed without these fields, as before they existed.
_V1_PGD: dict[str, Any] = {
    "mode": "paper",
    "norm": "l2",
    "foreground": False,
    "restarts": 1,
    "augment": 0.0,
    "shortcut_patch": 8,
    "shortcut_share": 0.5,
}

logger = logging.getLogger(__name__)

CombinerName = Literal["none", "concat", "mixup", "mixup_concat", "cutmix"]
assert set(COMBINERS) == {"none", "concat", "mixup", "mixup_concat", "cutmix"}


def _describe(exc: ValidationError, source: str) -> str:
    """Like ``format_validation_error`` but never echoes an input (it could be the secret)."""
    lines = [f"invalid encryption key in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


class EncryptionKey(StrictModel):
    """A secret encryption key (frozen). Build with :meth:`generate`, persist with :meth:`save`.

    Attributes:
        class_names: the classes, in model output order.
        targets: per class, the target classes of its PGD runs (distinct, in range).
        combiner: how the per-target outputs are merged (see ``_combiners``).
        combiner_params: per class, the combiner's secret parameters.
        version: 2 for keys made now; 1 for key files from before the protection modes (they
            load as the paper's plain whole-slice PGD, fingerprint unchanged).
        pgd: PGD settings used for encryption, the protection mode among them.
        seed: the seed targets and parameters were drawn from.
        allow_fixed_points: whether a class may target itself.
        secret: 256-bit random hex, the HMAC key of :attr:`fingerprint`; never shown in repr.
    """

    format: Literal["medcrypt-key"] = "medcrypt-key"
    version: Literal[1, 2] = 2
    class_names: tuple[str, ...] = Field(min_length=2)
    targets: tuple[tuple[int, ...], ...]
    combiner: CombinerName
    combiner_params: tuple[tuple[float, ...], ...]
    pgd: PGDSettings = Field(default_factory=PGDSettings)
    seed: int
    allow_fixed_points: bool = False
    secret: SecretStr = Field(min_length=32)
    #: content hashes (``save_checkpoint``'s ``sha256:...``) of the surrogate model(s) a mode
    #: ``unlearnable`` key was crafted with (``medcrypt craft``); empty for other modes. Left
    #: out of the file and the fingerprint when empty, so older keys keep theirs.
    surrogate: tuple[str, ...] = ()

    @field_serializer("secret", when_used="json")
    def _hide_secret(self, value: SecretStr) -> str:
        return str(value)  # '**********'; save() writes the real value explicitly

    @model_validator(mode="before")
    @classmethod
    def _legacy_pgd(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("version") == 1
            and isinstance(data.get("pgd"), dict)
        ):
            data = {**data, "pgd": {**_V1_PGD, **data["pgd"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> EncryptionKey:
        if self.version == 1:
            newer = {
                k: getattr(self.pgd, k) for k, v in _V1_PGD.items() if getattr(self.pgd, k) != v
            }
            if newer:
                raise ValueError(
                    f"a version 1 key predates protection modes and must use the paper's plain "
                    f"PGD, got pgd {newer}; make a new key (version 2)"
                )
        n = len(self.class_names)
        if len(set(self.class_names)) != n or any(not c for c in self.class_names):
            raise ValueError(f"class names must be distinct and non-empty, got {self.class_names}")
        if len(self.targets) != n or len(self.combiner_params) != n:
            raise ValueError(
                f"expected targets and combiner_params for each of the {n} classes, got "
                f"{len(self.targets)} target lists and {len(self.combiner_params)} parameter lists"
            )
        for y, (tgts, params) in enumerate(zip(self.targets, self.combiner_params, strict=True)):
            bad = [t for t in tgts if not 0 <= t < n]
            if bad:
                raise ValueError(
                    f"class {y} ({self.class_names[y]}): targets {bad} out of range({n})"
                )
            if len(set(tgts)) != len(tgts):
                raise ValueError(f"class {y} ({self.class_names[y]}): repeated targets {tgts}")
            if y in tgts and not self.allow_fixed_points:
                raise ValueError(
                    f"class {y} ({self.class_names[y]}) targets itself (a fixed point y->y) "
                    f"but allow_fixed_points is false"
                )
            if self.pgd.mode == "unlearnable" and tgts != (y,):
                raise ValueError(
                    f"class {y} ({self.class_names[y]}): a mode 'unlearnable' key maps every "
                    f"class to itself (error-minimizing noise toward its own label), got "
                    f"targets {tgts}"
                )
            try:
                validate_combiner(self.combiner, len(tgts), params)
            except ValueError as exc:
                raise ValueError(f"class {y} ({self.class_names[y]}): {exc}") from None
        if self.pgd.mode == "unlearnable" and (
            self.combiner != "none" or not self.allow_fixed_points
        ):
            raise ValueError(
                "a mode 'unlearnable' key uses combiner 'none' and allow_fixed_points true, got "
                f"combiner {self.combiner!r}, allow_fixed_points {self.allow_fixed_points}"
            )
        if self.surrogate and self.pgd.mode != "unlearnable":
            raise ValueError(
                f"only a mode 'unlearnable' key names a surrogate, not {self.pgd.mode!r}"
            )
        return self

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        class_names: Sequence[str],
        *,
        combiner: str,
        seed: int,
        targets_per_class: int | Sequence[int] | None = None,
        allow_fixed_points: bool = False,
        pgd: PGDSettings | None = None,
        secret: str | None = None,
    ) -> EncryptionKey:
        """Draw a key: distinct random targets per class and random combiner parameters.

        Targets and parameters are a function of ``seed`` (so treat the seed as secret too);
        ``secret`` is fresh randomness unless given (tests).

        Args:
            class_names: class names in model output order.
            combiner: one of ``none``, ``concat``, ``mixup``, ``mixup_concat``, ``cutmix``.
            seed: seed of targets and parameters.
            targets_per_class: N(y), one int for all classes or one per class; default 1 for
                ``none``, 4 for ``mixup_concat``, else 2.
            allow_fixed_points: allow a class to target itself (otherwise never y->y).
            pgd: PGD settings to record (default :class:`PGDSettings`).
            secret: 64 hex characters; default from :mod:`secrets`.

        Raises:
            EncryptionKeyError: impossible request (e.g. more targets than other classes).
        """
        names = tuple(str(c) for c in class_names)
        n = len(names)
        if pgd is not None and pgd.mode == "unlearnable":
            if combiner != "none" or targets_per_class not in (None, 1):
                raise EncryptionKeyError(
                    f"mode 'unlearnable' maps every class to itself with combiner 'none' "
                    f"(got combiner {combiner!r}, targets_per_class {targets_per_class})"
                )
            return cls.from_targets(
                names,
                [(y,) for y in range(n)],
                combiner="none",
                seed=seed,
                allow_fixed_points=True,
                pgd=pgd,
                secret=secret,
            )
        targets, params = draw_targets(names, combiner, seed, targets_per_class, allow_fixed_points)
        return cls._assemble(
            "generated key", names, targets, combiner, params, pgd, seed, allow_fixed_points, secret
        )

    @classmethod
    def from_targets(
        cls,
        class_names: Sequence[str],
        targets: Sequence[Sequence[int]],
        *,
        combiner: str,
        seed: int,
        allow_fixed_points: bool = False,
        pgd: PGDSettings | None = None,
        secret: str | None = None,
    ) -> EncryptionKey:
        """A key with a chosen correspondence (e.g. the paper's 0->(1,3), 1->(2,4), ...).

        Combiner parameters are drawn from ``seed``; validation as in :meth:`load`.

        Raises:
            EncryptionKeyError: targets out of range, repeated, fixed points, wrong counts.
        """
        names = tuple(str(c) for c in class_names)
        rng = np.random.default_rng(seed)
        try:
            params = [random_params(combiner, len(t), rng) for t in targets]
            chosen = [tuple(int(v) for v in t) for t in targets]
        except ValueError as exc:
            raise EncryptionKeyError(f"given targets: {exc}") from None
        return cls._assemble(
            "given targets", names, chosen, combiner, params, pgd, seed, allow_fixed_points, secret
        )

    @classmethod
    def _assemble(
        cls,
        what: str,
        names: tuple[str, ...],
        targets: Sequence[tuple[int, ...]],
        combiner: str,
        params: Sequence[tuple[float, ...]],
        pgd: PGDSettings | None,
        seed: int,
        allow_fixed_points: bool,
        secret: str | None,
    ) -> EncryptionKey:
        """Validate and build a key with a fresh secret unless one is given; ``what`` names
        the request in the :class:`EncryptionKeyError` raised for an invalid one."""
        try:
            return cls(
                class_names=names,
                targets=tuple(targets),
                combiner=combiner,  # type: ignore[arg-type]
                combiner_params=tuple(params),
                pgd=pgd or PGDSettings(),
                seed=seed,
                allow_fixed_points=allow_fixed_points,
                secret=SecretStr(secret if secret is not None else _secrets.token_hex(32)),
            )
        except ValidationError as exc:
            raise EncryptionKeyError(_describe(exc, what)) from None

    # -- identity -----------------------------------------------------------------------------

    def _dump(self, **kwargs: Any) -> dict[str, Any]:
        # a version 1 key is dumped exactly as before version 2 fields existed, and a key
        # without a surrogate exactly as before the field existed
        exclude: dict[str, Any] = {"pgd": set(_V1_PGD)} if self.version == 1 else {}
        if not self.surrogate:
            exclude["surrogate"] = True
        data: dict[str, Any] = self.model_dump(mode="json", exclude=exclude, **kwargs)
        return data

    def _public_json(self) -> bytes:
        data = self._dump()
        data.pop("secret", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def fingerprint(self) -> str:
        """``"mk1:" + 16 hex`` of HMAC-SHA256(secret, canonical JSON of the rest): publishable."""
        mac = hmac.new(self.secret.get_secret_value().encode(), self._public_json(), hashlib.sha256)
        return "mk1:" + mac.hexdigest()[:16]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"EncryptionKey(fingerprint={self.fingerprint!r}, classes={self.num_classes}, "
            f"combiner={self.combiner!r})"
        )

    def __str__(self) -> str:
        return self.__repr__()

    def with_surrogate(self, content_hashes: Sequence[str]) -> EncryptionKey:
        """This key naming the surrogate checkpoint(s) it was crafted with (same secret).

        Raises:
            EncryptionKeyError: not a mode ``unlearnable`` key, or no hash given.
        """
        if not content_hashes:
            raise EncryptionKeyError("a surrogate needs at least one checkpoint hash")
        data = self._dump()
        data["surrogate"] = [str(h) for h in content_hashes]
        data["secret"] = self.secret.get_secret_value()
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise EncryptionKeyError(_describe(exc, "key with surrogate")) from None

    # -- checks -------------------------------------------------------------------------------

    def check_surrogate(self, content_hashes: Sequence[str]) -> None:
        """Refuse crafting models that are not this key's surrogate (mode ``unlearnable``).

        Keys of other modes accept any model.

        Raises:
            EncryptionKeyError: an unlearnable key that names no surrogate yet (``medcrypt
                craft`` was not run), a model whose content hash the key does not name, or
                a surrogate the key names that is missing.
        """
        if self.pgd.mode != "unlearnable":
            return
        if not self.surrogate:
            raise EncryptionKeyError(
                f"key {self.fingerprint} is mode unlearnable but names no surrogate: run "
                f"'medcrypt craft --key KEY --data SLICES --out surrogate.pt' first and pass "
                f"that surrogate as the model"
            )
        given, named = list(content_hashes), set(self.surrogate)
        stray = [h for h in given if h not in named]
        if stray or set(given) != named:
            raise EncryptionKeyError(
                f"key {self.fingerprint} was crafted with surrogate model(s) "
                f"{sorted(named)}, got {given}: pass the surrogate checkpoint(s) that "
                f"'medcrypt craft' wrote with this key"
            )

    def check_model(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """Refuse a model this key was not made for.

        Raises:
            EncryptionKeyError: different class count, or (when given) different class names.
        """
        if num_classes != self.num_classes:
            raise EncryptionKeyError(
                f"key has {self.num_classes} classes, model has {num_classes}: this key was not "
                f"made for this model (key {self.fingerprint})"
            )
        if class_names is not None and tuple(class_names) != self.class_names:
            raise EncryptionKeyError(
                f"key classes {list(self.class_names)} differ from model classes "
                f"{list(class_names)} (names and order must match; key {self.fingerprint})"
            )

    # -- persistence --------------------------------------------------------------------------

    def to_json(self) -> str:
        """The full key including the secret, as JSON text. Handle as a secret."""
        data = self._dump()
        data["secret"] = self.secret.get_secret_value()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the key as JSON, owner-only (0o600) from creation; atomic replace.

        Raises:
            EncryptionKeyError: the file exists and ``overwrite`` is false, or cannot be written.
        """
        p = Path(path)
        if p.exists() and not overwrite:
            raise EncryptionKeyError("key file already exists (refusing to overwrite)", uri=str(p))
        tmp = p.with_name(f".{p.name}.{_secrets.token_hex(4)}.tmp")
        try:
            write_private(tmp, self.to_json().encode())
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise EncryptionKeyError(f"cannot write key file: {exc}", uri=str(p)) from exc
        logger.info("wrote key %s to %s", self.fingerprint, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> EncryptionKey:
        """Read and validate a key file.

        Raises:
            EncryptionKeyError: missing, unreadable, not JSON, or invalid (names the file and
                every bad field).
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError as exc:
            raise EncryptionKeyError("key file not found", uri=str(p)) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise EncryptionKeyError(f"cannot read key file: {exc}", uri=str(p)) from exc
        if mode & 0o077:
            logger.warning("key file %s is readable by others (mode %o); chmod 600 it", p, mode)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EncryptionKeyError(f"key file is not valid JSON: {exc}", uri=str(p)) from exc
        if not isinstance(data, dict) or data.get("format") != "medcrypt-key":
            raise EncryptionKeyError(
                "expected a JSON object with format 'medcrypt-key'", uri=str(p)
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # ``from None``: pydantic's own message echoes inputs, which may include the secret
            raise EncryptionKeyError(_describe(exc, str(p)), uri=str(p)) from None
