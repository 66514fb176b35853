"""Files that hold secrets: owner-only from their first byte.

Used for the encryption key (``processing``), the reader study's unblinding key (``study``)
and the copy of a key the archive job stages from object storage (``cluster``). Lives at the
package root because ``study`` must not import ``processing``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: str | Path, data: bytes) -> None:
    """Create ``path``, which must not exist, with mode 0o600 and write ``data`` to disk.

    The file never exists with a wider mode: it is created 0o600 (``O_EXCL``, so an existing
    file or planted link is never written through), then set to exactly 0o600 because
    ``O_CREAT`` applies the umask, written and fsynced before it is closed.

    Raises:
        FileExistsError: ``path`` already exists.
        OSError: it could not be created or written (a partly written file may remain;
            callers that need atomicity write a temporary name and ``os.replace`` it).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
