"""The dependency direction of DESIGN.md, checked on the source's import statements."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medcrypt"

# package -> top-level modules it must never import (directly, anywhere in its source)
FORBIDDEN = {
    "processing": {
        "ray",
        "boto3",
        "botocore",
        "medcrypt.cluster",
        "medcrypt.storage",
        "medcrypt.cli",
        "medcrypt.study",
    },
    "medical": {
        "ray",
        "boto3",
        "botocore",
        "torch",
        "medcrypt.cluster",
        "medcrypt.storage",
        "medcrypt.cli",
        "medcrypt.study",
        "medcrypt.processing",
    },
    "storage": {
        "ray",
        "torch",
        "medcrypt.cluster",
        "medcrypt.cli",
        "medcrypt.study",
        "medcrypt.processing",
        "medcrypt.medical",
    },
    # inside processing: assessment -> protection -> models, never back up
    "processing/models": {
        "medcrypt.processing.protection",
        "medcrypt.processing.assessment",
        "medcrypt.processing",  # the package's __init__ re-exports all three rooms
    },
    "processing/protection": {"medcrypt.processing.assessment", "medcrypt.processing"},
    "study": {"torch", "ray", "medcrypt.processing", "medcrypt.cluster", "medcrypt.cli"},
    # the readers' web app (medcrypt study serve): the study's core, never the job's
    "study/web": {
        "torch",
        "ray",
        "boto3",
        "medcrypt.processing",
        "medcrypt.cluster",
        "medcrypt.storage",
        "medcrypt.cli",
        "medcrypt.report",
    },
    "cluster": {"medcrypt.cli", "medcrypt.study", "medcrypt.report"},
    # pages read records and reports as JSON: no torch / ray, nor the packages that write them
    "report": {
        "torch",
        "ray",
        "medcrypt.processing",
        "medcrypt.cluster",
        "medcrypt.cli",
        "medcrypt.study",
    },
}


def _parse(path: Path) -> ast.Module:
    """``ast.parse`` of a file, retried on CPython 3.11's spurious AST SystemError.

    CPython before 3.11.8 / 3.12.1 can raise "SystemError: AST constructor recursion depth
    mismatch" from ``ast.parse`` while other threads run Python code (python/cpython#106905);
    the integration tests leave Ray's background threads alive in this process. The parse
    is pure, so a retry is exact.
    """
    source = path.read_text(encoding="utf-8")
    for attempt in range(3):
        try:
            return ast.parse(source, filename=str(path))
        except SystemError as err:
            if "recursion depth mismatch" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


# Parsed once at collection, before any test has started a thread.
_TREES: dict[Path, ast.Module] = {path: _parse(path) for path in SRC.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    tree = _TREES.get(path) or _parse(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(package: str) -> list[str]:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in _imports(path):
            for forbidden in FORBIDDEN[package]:
                # "medcrypt.processing" alone forbids the re-exporting __init__, not the rooms
                exact_only = forbidden == "medcrypt.processing" and "/" in package
                if name == forbidden or (not exact_only and name.startswith(forbidden + ".")):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package: str) -> None:
    assert (SRC / package).is_dir()
    assert _violations(package) == []


def test_processing_rooms_see_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rooms' rule can fail: a models module importing protection is reported."""
    fake = tmp_path / "processing" / "models"
    fake.mkdir(parents=True)
    (fake / "_x.py").write_text(
        "from medcrypt.processing.protection._keys import EncryptionKey\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    assert _violations("processing/models") == [
        "processing/models/_x.py imports medcrypt.processing.protection._keys"
    ]


def test_study_core_does_not_import_the_web_app() -> None:
    """create / ingest / tally work without the web framework: only study/web imports it."""
    web = SRC / "study" / "web"
    bad = []
    for path in sorted((SRC / "study").rglob("*.py")):
        if path.is_relative_to(web):
            continue
        for name in _imports(path):
            if name.split(".")[0] in {"starlette", "uvicorn"} or name.startswith(
                "medcrypt.study.web"
            ):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert bad == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    """The check itself can fail: a planted import of ray is reported."""
    f = tmp_path / "x.py"
    f.write_text("import ray.data\nfrom boto3 import client\n", encoding="utf-8")
    assert {"ray.data", "boto3"} <= _imports(f)


def test_no_print_in_library_code() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        tree = _TREES[path]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


#: the longest a module in src/ may grow before it is split along its seams (issue 20)
MAX_MODULE_LINES = 450


def test_no_module_over_the_line_limit() -> None:
    lengths = {
        path.relative_to(SRC): len(path.read_text(encoding="utf-8").splitlines())
        for path in SRC.rglob("*.py")
    }
    offenders = sorted(f"{p}: {n} lines" for p, n in lengths.items() if n > MAX_MODULE_LINES)
    assert offenders == [], f"modules over {MAX_MODULE_LINES} lines: {offenders}"


def test_the_design_page_that_docstrings_name_exists() -> None:
    naming = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "DESIGN.md" in path.read_text(encoding="utf-8")
    )
    assert naming, "no docstring names DESIGN.md any more: drop this test"
    assert (SRC.parents[1] / "DESIGN.md").is_file(), f"{naming} name a DESIGN.md that is missing"
