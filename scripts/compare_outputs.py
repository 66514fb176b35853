"""Do two output folders of ``medcrypt demo`` hold the same results? (issue 20: a refactor
changes no output.)

Usage: python scripts/compare_outputs.py BEFORE AFTER AGAIN

Each argument is a folder, or ``FOLDER=PATH`` when the run was written at PATH and moved: the
folder's path inside the files (absolute paths in records and pages) reads as ``<out>`` in
either case, so runs written to different folders compare.

BEFORE and AFTER are the demo run with the old and the new code, AGAIN a second run with one
of them. What differs between AFTER and AGAIN (same code) is what a run never repeats: run
ids, timestamps, durations, source versions (mtimes), the study's freshly drawn secret and
image ids, and every file that carries them; names drawn afresh compare by their shape. Any
difference between BEFORE and AFTER beyond those is reported, and the exit status is 1. JSON
and JSONL files are compared field by field, every other file byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any


def _flatten(value: Any, path: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out)
    else:
        out[path] = json.dumps(value, sort_keys=True)


def _text(file: Path, root: str) -> str:
    return file.read_text(encoding="utf-8").replace(root, "<out>")


def _bytes(file: Path, root: str) -> bytes:
    return file.read_bytes().replace(root.encode(), b"<out>")


def _fields(file: Path, root: str) -> dict[str, str]:
    text = _text(file, root)
    out: dict[str, str] = {}
    if file.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines()):
            if line.strip():
                _flatten(json.loads(line), f"[{n}]", out)
    else:
        _flatten(json.loads(text), "", out)
    return out


def _where(arg: str) -> tuple[Path, str]:
    folder, _, written = arg.partition("=")
    return Path(folder), written or str(Path(folder).resolve())


def differences(arg_a: str, arg_b: str) -> set[str]:
    """``file`` (bytes, or present in one only) or ``file:field`` (JSON) that differ."""
    (a, root_a), (b, root_b) = _where(arg_a), _where(arg_b)
    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    out = {f"{f} (only in one)" for f in files_a ^ files_b}
    for rel in sorted(files_a & files_b):
        fa, fb = a / rel, b / rel
        if fa.suffix in (".json", ".jsonl"):
            xa, xb = _fields(fa, root_a), _fields(fb, root_b)
            out |= {f"{rel}:{k}" for k in xa.keys() | xb.keys() if xa.get(k) != xb.get(k)}
        else:
            da = hashlib.sha256(_bytes(fa, root_a)).digest()
            if da != hashlib.sha256(_bytes(fb, root_b)).digest():
                out.add(rel)
    return out


#: names a run draws afresh: run ids, study image ids, digests in ledger names
_DRAWN = (
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}"), "<run>"),
    (re.compile(r"\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b"), "<id>"),
    (re.compile(r"[0-9a-f]{10,}"), "<hex>"),
)


def _shape(entry: str) -> str:
    """An entry with the names a run draws afresh replaced, so runs' entries compare."""
    for pattern, name in _DRAWN:
        entry = pattern.sub(name, entry)
    return entry


def main(before: str, after: str, again: str) -> int:
    changed = differences(before, after)
    volatile = {_shape(e) for e in differences(after, again)}
    unexplained = sorted({_shape(e) for e in changed} - volatile)
    n_files = sum(1 for p in _where(after)[0].rglob("*") if p.is_file())
    print(f"{n_files} files; {len(volatile)} entries differ between two runs of the same code")
    print(f"(run ids, times); {len(changed)} between before and after, {len(unexplained)} not")
    print("explained by that:")
    for entry in unexplained:
        print(f"  {entry}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
