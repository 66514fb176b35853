"""Secret files (keys) are owner-only from their first byte and never written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from medcrypt._private_files import write_private


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_mode_is_exactly_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "key.json"
    old = os.umask(umask)
    try:
        write_private(path, b'{"secret": 1}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b'{"secret": 1}'


def test_existing_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_private(path, b"new")
    assert path.read_bytes() == b"old"


def test_planted_symlink_is_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"untouched")
    link = tmp_path / "key.json"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private(link, b"secret")
    assert target.read_bytes() == b"untouched"
