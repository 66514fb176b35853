"""Lazy re-exports for the packages that wrap heavy engines (torch, Ray, boto3).

A package ``__init__`` that re-exports its modules' names would import all of them, and so
every engine, the moment any one of its modules is imported: ``medcrypt.cluster._config``
(a pydantic model the CLI needs to draw ``encrypt --help``) would pull in Ray and torch. Such
a package lists its re-exports as ordinary imports under ``if TYPE_CHECKING:`` (what type
checkers and readers see) and, at run time, gets a module ``__getattr__`` (PEP 562) from
:func:`lazy_exports` that imports the defining module on first use of a name. The table is
read from those very import statements, so the list is written once.

    if TYPE_CHECKING:
        from medcrypt.cluster._job import run_job
    else:
        __getattr__, __dir__ = lazy_exports(__name__, __file__)
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["lazy_exports", "reexport_table"]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def reexport_table(source: str) -> dict[str, str]:
    """Exported name -> defining module, from the ``from M import a, b`` statements inside the
    module's top-level ``if TYPE_CHECKING:`` blocks."""
    table: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for alias in stmt.names:
                    table[alias.asname or alias.name] = stmt.module
    return table


def lazy_exports(
    package: str, init_file: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package`` whose ``__init__`` is
    ``init_file``: a re-exported name is imported from its module on first access (and kept
    in the package's namespace); a subpackage or module name imports that module."""
    table = reexport_table(Path(init_file).read_text(encoding="utf-8"))
    submodules = {m.name for m in pkgutil.iter_modules([str(Path(init_file).parent)])}

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
