"""A real local Ray head started with ``ray start --head`` (dashboard + Jobs API), for the
tests of the README's cluster route, with Ray 2.60's token authentication switched on.

The head runs with its own ``--temp-dir``, so its address never lands in
``/tmp/ray/ray_current_cluster`` (where any ``ray.init()`` on this machine would find and join
it), and is stopped by SIGTERM to the blocking ``ray start`` process (never ``ray stop``,
which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the head's process group (the one this fixture started), SIGKILL to what
    is left after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            proc.poll()  # reap the leader
            time.sleep(0.5)


@dataclass(frozen=True)
class RayHead:
    """``address``: the dashboard URL; ``token_path``: the cluster's token file;
    ``client_env``: what a client needs to submit (token mode and the token file)."""

    address: str
    token_path: Path
    client_env: dict[str, str]


@pytest.fixture(scope="module")
def ray_head(aws_env: dict[str, str]) -> Iterator[RayHead]:
    """A token-authenticated local head (2 CPUs) with the dashboard on a free port."""
    ray_bin = shutil.which("ray")
    assert ray_bin, "the ray command is missing (pip install 'medcrypt[cluster]')"
    root = Path(tempfile.mkdtemp(prefix="mch-", dir="/tmp"))  # short: socket paths
    token = root / "auth_token"
    token.write_text(uuid.uuid4().hex, encoding="utf-8")
    token.chmod(0o600)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    dash = _free_port()
    env = {**os.environ, **auth}
    env.pop("RAY_ADDRESS", None)
    # jobs run `medcrypt` from the head's PATH (on a cluster: the venv its setup installs)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        ray_bin,
        "start",
        "--head",
        f"--port={_free_port()}",
        f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1",
        # the job agent's HTTP port defaults to a fixed 52365: an agent left by an earlier
        # test's Ray still holds it, and this head then never offers a job agent ("No
        # available agent to submit job"), as seen when the suite runs in order
        f"--dashboard-agent-listen-port={_free_port()}",
        "--include-dashboard=true",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--temp-dir={root / 'ray'}",
        "--disable-usage-stats",
        "--block",
    ]
    log = open(root / "head.log", "wb")  # noqa: SIM115 - closed in the finally below
    # its own process group: every Ray process of this head is stopped together (a SIGTERM to
    # `ray start` alone waits ~30 s for a drain that its stopped GCS cannot answer)
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "head.log").read_text(errors="replace")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # 401 without a token: the dashboard is up
            except OSError:
                assert time.monotonic() < deadline, "the Ray dashboard did not come up"
                time.sleep(1)
        yield RayHead(address=address, token_path=token, client_env=auth)
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
