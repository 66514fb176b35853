"""Entry point for ``ray submit``: runs ``medcrypt encrypt`` with the given arguments.

``ray submit ray_config.yaml scripts/ray_job.py -- -c job.yaml`` copies this file to the head
node and runs it there with the installed medcrypt (ray_config.yaml's setup commands install
it); inside the cluster, ``run_job`` connects to the running Ray instance. Exit codes are
those of ``medcrypt encrypt``.
"""

from __future__ import annotations

import sys

from medcrypt.cli import main

if __name__ == "__main__":
    main(args=["encrypt", *sys.argv[1:]], prog_name="medcrypt")
