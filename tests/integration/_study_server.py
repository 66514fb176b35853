"""A real ``medcrypt study serve`` in a subprocess on 127.0.0.1, for the serve tests.

Started as a coordinator starts it (``python -m medcrypt study serve STUDY --port P``) with
``cli=True``; otherwise through the same two calls the command makes (``prepare_server``, then
``run_server``: uvicorn on 127.0.0.1) without the CLI's own start-up, which imports torch and
takes 5-12 s on 2 busy cores. Waited for until it answers (up to 180 s: on 2 cores shared
with other jobs importing the study package alone took 21-33 s, and 60 s was not always
enough); stopped with SIGTERM or killed with
SIGKILL. Output goes to a file beside the study; links are read from ``unblinding/links.txt``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["StudyServer", "free_port", "study_links"]

_DIRECT = """
import sys
from pathlib import Path
from medcrypt.study.web import prepare_server, run_server
prepared = prepare_server(Path(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]))
run_server(prepared.app, "127.0.0.1", int(sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def study_links(study_dir: Path) -> dict[str, str]:
    """reader -> token, plus 'coordinator' -> token, from the links file serve wrote."""
    data = json.loads((study_dir / "unblinding" / "links.txt").read_text(encoding="utf-8"))
    return {**data["readers"], "coordinator": data["coordinator"]}


class StudyServer:
    def __init__(self, study_dir: Path, port: int | None = None) -> None:
        self.study_dir = Path(study_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.study_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *args: str, cli: bool = False, timeout_s: float = 180.0) -> StudyServer:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["OMP_NUM_THREADS"] = "1"
        if cli:
            command = [sys.executable, "-m", "medcrypt", "study", "serve", str(self.study_dir)]
            command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        else:
            command = [sys.executable, "-c", _DIRECT, str(self.study_dir), str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/static/app.css", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout_s} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
