"""A :class:`JobConfig` from a YAML file and/or CLI flags (flags win over the file).

:func:`job_cli_options` derives one flag per JobConfig field (nested ``pgd`` fields as
``--pgd-<name>``), :func:`cli_overrides` turns the flags given back into the nested mapping,
and :func:`load_job_config` merges it over the YAML, makes the file's relative paths
absolute against its folder, and validates, naming each bad value as the user gave it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, RootModel, ValidationError

from medcrypt.cluster._config import _LOCATION_FIELDS, JobConfig
from medcrypt.cluster._option_errors import describe_job_errors
from medcrypt.config import load_config, validate_config
from medcrypt.errors import ConfigError
from medcrypt.storage import is_s3_uri

__all__ = [
    "CliOption",
    "cli_overrides",
    "job_cli_options",
    "job_config_from_mapping",
    "load_job_config",
]


class _RawMapping(RootModel[dict[str, Any]]):
    """Any mapping: lets load_config read and check the YAML before the real validation."""


def job_config_from_mapping(data: Mapping[str, Any], *, source: str = "job config") -> JobConfig:
    """Validate ``data`` into a JobConfig; ConfigError names ``source`` and every bad field."""
    return validate_config(JobConfig, dict(data), source=source)


def load_job_config(
    path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> JobConfig:
    """A JobConfig from a YAML file and/or flat CLI options (which win over the file).

    Args:
        path: YAML file with JobConfig's fields (``pgd`` as a nested mapping); optional.
        overrides: flat options as :func:`job_cli_options` names them (``source``,
            ``pgd_eps``, ``formats`` ...); ``None`` values (flags not given) are ignored.

    Raises:
        ConfigError: unreadable YAML, unknown or invalid fields, dest overlapping source,
            missing key/model/manifest files, ... naming the file and the fields.
    """
    data: dict[str, Any] = {}
    file: str | None = None
    if path is not None:
        data = load_config(path, _RawMapping).root
        base = Path(path).resolve().parent
        for name in _LOCATION_FIELDS:
            value = data.get(name)
            if isinstance(value, str) and value and not _is_absolute(value):
                data[name] = str(base / value)
        file = str(path)
    file_data = dict(data)
    nested = cli_overrides(overrides or {})
    if nested:
        data = _deep_merge(data, nested)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        # named as the user gave each value: ``--pgd-eps: must be > 0 (got -1.0)``
        message, first = describe_job_errors(exc, cli=nested, file_data=file_data, file=file)
        raise ConfigError(message, field=first) from exc


def _is_absolute(value: str) -> bool:
    return is_s3_uri(value) or "://" in value or value.startswith(("/", "~"))


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass(frozen=True)
class CliOption:
    """One CLI flag for one JobConfig field.

    Attributes:
        name: the Python parameter name click passes (``pgd_eps``).
        flag: the long flag (``--pgd-eps``); booleans also have ``--no-...`` (``negative``).
        path: where it goes in the config (``("pgd", "eps")``).
        type: ``str``, ``int``, ``float`` or ``bool``.
        choices: allowed values for a single-choice option, else None.
        help: one line for ``--help``.
    """

    name: str
    flag: str
    path: tuple[str, ...]
    type: type
    choices: tuple[str, ...] | None
    help: str

    @property
    def negative(self) -> str | None:
        """``--no-<flag>`` for booleans."""
        return "--no-" + self.flag[2:] if self.type is bool else None


_HELP: dict[tuple[str, ...], str] = {
    ("pgd", "eps"): "L2 budget of the perturbation per slice, in [0,1] pixel units "
    "[default: the key's; another value needs --override-key-pgd]",
    ("pgd", "step"): "L2 length of each PGD step [default: the key's; another value needs "
    "--override-key-pgd]",
    ("pgd", "iters"): "PGD iterations [default: the key's; another value needs --override-key-pgd]",
    ("pgd", "best_iterate"): "keep the iterate with the lowest target loss, not the last "
    "[default: the key's; another value needs --override-key-pgd]",
    ("pgd", "precision"): "auto (bf16 on capable GPUs and bf16-native CPUs), fp32 or bf16 "
    "[default: the key's]",
    ("pgd", "channels_last"): "NHWC memory format [default: the key's; unset there: on]",
}


def job_cli_options() -> tuple[CliOption, ...]:
    """A flag for every JobConfig field (nested ``pgd`` fields as ``--pgd-<name>``).

    The CLI adds each as a click option with ``default=None`` (booleans as
    ``--x/--no-x``), and passes the collected keyword arguments to
    :func:`load_job_config` as ``overrides``.
    """
    return tuple(_options(JobConfig, ()))


def _options(model: type[BaseModel], prefix: tuple[str, ...]) -> list[CliOption]:
    out: list[CliOption] = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_options(annotation, path))
            continue
        kind, choices = _cli_type(annotation)
        text = info.description or _HELP.get(path, name.replace("_", " "))
        if not info.is_required() and info.default is not None and kind is not bool:
            default = info.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text += f" [default: {shown}]"
        out.append(
            CliOption(
                name="_".join(path),
                flag="--" + "-".join(path).replace("_", "-"),
                path=path,
                type=kind,
                choices=choices,
                help=text,
            )
        )
    return out


def _cli_type(annotation: Any) -> tuple[type, tuple[str, ...] | None]:
    """Map a field annotation onto a flag type (tuples become comma-separated strings)."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    first = args[0]
    if get_origin(first) is Literal or get_origin(annotation) is Literal:
        lit = first if get_origin(first) is Literal else annotation
        return str, tuple(str(a) for a in get_args(lit))
    if get_origin(first) is tuple:
        return str, None
    if first is bool:
        return bool, None
    if first in (int, float, str):
        return first, None
    return str, None


def cli_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """Flat CLI options -> the nested mapping JobConfig expects; flags not given are dropped.

    ``{"pgd_eps": 1.5, "source": None, "formats": "png,nifti"}`` ->
    ``{"pgd": {"eps": 1.5}, "formats": "png,nifti"}``. Unknown names raise ConfigError.
    """
    by_name = {o.name: o for o in job_cli_options()}
    nested: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or (
            isinstance(value, Sequence) and not isinstance(value, str) and not value
        ):
            continue
        option = by_name.get(name)
        if option is None:
            raise ConfigError(
                f"unknown job option {name!r}; expected one of {', '.join(sorted(by_name))}",
                field=name,
            )
        node = nested
        for part in option.path[:-1]:
            node = node.setdefault(part, {})
        node[option.path[-1]] = value
    return nested
