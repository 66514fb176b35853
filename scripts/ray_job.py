"""Entry point for ``ray submit``: runs ``medcrypt encrypt`` with the given arguments.

``ray submit ray_config.yaml scripts/ray_job.py -- -c job.yaml`` copies this file to the head
node as ``~/ray_job.py`` and runs it there, in the home folder, with the installed medcrypt
(ray_config.yaml's setup commands install it). ray_config.yaml syncs the repository to
``~/medcrypt`` on every node, so this script first changes into that folder (or into
``$MEDCRYPT_REPO``): ``-c job.yaml`` is the ``job.yaml`` at the root of the repository copy
that ``ray up`` synced, and relative paths inside it are relative to it. Inside the cluster,
``run_job`` connects to the running Ray instance. Exit codes are those of ``medcrypt encrypt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medcrypt.cli import main

if __name__ == "__main__":
    repo = Path(os.environ.get("MEDCRYPT_REPO", Path.home() / "medcrypt"))
    if repo.is_dir():
        os.chdir(repo)
    main(args=["encrypt", *sys.argv[1:]], prog_name="medcrypt")
