"""Config plumbing shared by every area: a strict frozen pydantic base and a YAML loader.

Each area defines its own config models next to the code that uses them
(``medcrypt.processing.PGDSettings``, ``medcrypt.cluster.JobConfig``,
``medcrypt.study.StudyConfig``) on top of :class:`StrictModel`, and loads them with
:func:`load_config`, which turns pydantic's validation errors into a :class:`ConfigError`
naming the file and every bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medcrypt.errors import ConfigError

__all__ = ["StrictModel", "format_validation_error", "load_config", "validate_config"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Frozen, keyword-only, no unknown fields: the base of every config and record."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def format_validation_error(exc: ValidationError, *, source: str) -> str:
    """Render a pydantic error as one line per bad field, naming where it came from."""
    lines = [f"invalid {exc.title} in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def validate_config(model: type[M], data: Any, *, source: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        raise ConfigError(
            format_validation_error(exc, source=source),
            field=".".join(str(p) for p in first) or None,
            uri=source,
        ) from exc


def load_config(path: str | Path, model: type[M], *, overrides: dict[str, Any] | None = None) -> M:
    """Load a YAML file into ``model``; ``overrides`` (e.g. CLI flags) win over the file.

    Raises:
        ConfigError: the file is missing, is not YAML, is not a mapping, or fails validation.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {p}", uri=str(p)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc}", uri=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file is not valid YAML: {exc}", uri=str(p)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file must hold a mapping at the top level, got {type(data).__name__}",
            uri=str(p),
        )
    if overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return validate_config(model, data, source=str(p))
