"""Job-config validation errors told the way the user gave the value: by flag, or by file.

``load_job_config`` merges a YAML file and command-line flags; pydantic reports problems by
field path with its own wording ("Value error, ...", "Input should be greater than 0"). This
module rewrites each one as ``--pgd-eps: must be > 0 (got -1.0)`` when the value came from
a flag, ``pgd.eps in job.yaml: ...`` when it came from the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["describe_job_errors"]


def _plain(err: Mapping[str, Any]) -> str:
    """pydantic's message for one error, in the house style (lower case, "must be ...")."""
    kind, ctx = str(err.get("type", "")), err.get("ctx") or {}
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    for name, op in bounds.items():
        if kind == name:
            limit = next(iter(ctx.values()), "?")
            shown = f"{limit:g}" if isinstance(limit, int | float) else str(limit)
            return f"must be {op} {shown}"
    if kind == "missing":
        return "required, not given"
    if kind == "extra_forbidden":
        return "unknown option"
    if kind == "literal_error" and "expected" in ctx:
        return f"must be {ctx['expected']}"
    msg = str(err.get("msg", ""))
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if kind.startswith("assertion"):
        msg = msg.removeprefix("Assertion failed, ")
    return msg[:1].lower() + msg[1:]


def _given(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def describe_job_errors(
    exc: ValidationError,
    *,
    cli: Mapping[str, Any],
    file_data: Mapping[str, Any],
    file: str | None,
) -> tuple[str, str | None]:
    """(message, first field) for a JobConfig validation error.

    Args:
        exc: the error from validating the merged config.
        cli: the nested mapping the flags gave (``cli_overrides``).
        file_data: the mapping the YAML file gave (empty without a file).
        file: the YAML file's path, or None.
    """
    lines: list[str] = []
    first: str | None = None
    if file is None:
        where = "options"
    else:
        where = f"settings ({file} + options)" if cli else f"settings in {file}"
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        path = loc[:2] if loc[:1] == ("pgd",) and len(loc) > 1 else loc[:1]
        flag = "--" + "-".join(path).replace("_", "-") if path else ""
        if not path:
            label = where
        elif _given(cli, path):
            label = flag
        elif file is not None and _given(file_data, path):
            label = f"{'.'.join(loc)} in {file}"
        elif err.get("type") == "missing":
            label = flag if file is None else f"{flag} (or {'.'.join(path)}: in {file})"
        else:
            label = flag
        text = _plain(err)
        got = err.get("input")
        if err.get("type") != "missing" and path and not isinstance(got, Mapping):
            text += f" (got {got!r})"
        lines.append(f"{label}: {text}")
        if first is None and path:
            first = ".".join(path)
    if len(lines) == 1:
        return lines[0], first
    return f"{len(lines)} invalid {where}:\n  " + "\n  ".join(lines), first
