"""Start-up of the ``medcrypt`` command: ``--help`` and ``study serve`` (issue 25, item 11).

Measures, each in a fresh process as a user starts it:

* ``medcrypt --help``: wall and CPU seconds (user + system) from spawn to exit, the median
  of ``--repeats`` runs, timed round-robin with the baseline ``python -c pass`` (the
  interpreter's own start-up); the ratio is how many interpreter start-ups the help costs.
  On a shared machine the CPU seconds are the figure to compare: wall time grows with load.
* ``medcrypt study serve STUDY``: seconds from spawn to the first ``200`` on ``GET /`` (and
  the CPU seconds the server had used by then), and its resident memory (VmRSS) after it has
  sat idle ``--idle-s`` seconds, on a small phantom study built in a temporary folder (median
  of ``--serve-repeats`` starts).
* which heavy engines ``import medcrypt.cli`` loads (``sys.modules`` of a fresh process).

    python benchmarks/cli_startup.py [--repeats 10] [--serve-repeats 3] [--idle-s 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HEAVY = ("torch", "ray", "boto3", "scipy", "pandas", "pyarrow", "matplotlib", "SimpleITK")


def _medcrypt() -> list[str]:
    found = shutil.which("medcrypt", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "medcrypt"]


def _wall(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _serve_once(study: Path, idle_s: float) -> tuple[float, float, float]:
    port = _free_port()
    cmd = [*_medcrypt(), "study", "serve", str(study), "--host", "127.0.0.1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        first, cpu = time.perf_counter() - t0, _cpu_s(proc.pid)
        time.sleep(idle_s)
        return first, cpu, _rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _phantom_study(root: Path) -> Path:
    import datetime as dt

    from medcrypt.medical import CLASS_NAMES, encode_png16, make_phantom_slices
    from medcrypt.study import StudyConfig, cases_from_folders, create_study

    images, labels = make_phantom_slices(2, size=32, seed=7)
    for side in ("originals", "protected"):
        (root / side).mkdir(parents=True)
    rows = ["case_id,label"]
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        for side in ("originals", "protected"):
            (root / side / f"case{i:03d}.png").write_bytes(encode_png16(img))
        rows.append(f"case{i:03d},{CLASS_NAMES[int(lab)]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = StudyConfig.model_validate(
        {
            "name": "startup",
            "classes": CLASS_NAMES,
            "readers": ("r1", "r2"),
            "design": "counterbalanced",
            "seed": 1,
            "washout_days": 21,
            "start_date": dt.datetime.now(dt.UTC).date(),
            "non_inferiority_margin": 0.1,
        }
    )
    cases = cases_from_folders(
        root / "originals", root / "protected", root / "labels.csv", config.classes
    )
    create_study(config, cases, root / "study")
    return root / "study"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--serve-repeats", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=3.0)
    args = parser.parse_args()

    probe = f"import sys, medcrypt.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    print(f"heavy modules after `import medcrypt.cli`: {loaded}")

    help_cmd, bare = [*_medcrypt(), "--help"], [sys.executable, "-c", "pass"]
    _wall(help_cmd)  # warm the page cache and .pyc files, untimed
    helps, bases = [], []
    for _ in range(args.repeats):
        helps.append(_wall(help_cmd))
        bases.append(_wall(bare))
    walls = [w for w, _ in helps]
    h, b = statistics.median(walls), statistics.median(w for w, _ in bases)
    h_cpu, b_cpu = statistics.median(c for _, c in helps), statistics.median(c for _, c in bases)
    print(
        f"medcrypt --help: median {h:.2f} s wall (min {min(walls):.2f}, max {max(walls):.2f}) "
        f"over {args.repeats}, {h_cpu:.2f} s CPU; python -c pass {b:.2f} s wall, "
        f"{b_cpu:.2f} s CPU; ratio {h / b:.1f}x wall, {h_cpu / max(b_cpu, 1e-3):.1f}x CPU"
    )

    with tempfile.TemporaryDirectory(prefix="mc-startup-") as tmp:
        study = _phantom_study(Path(tmp))
        env_threads = os.environ.get("OMP_NUM_THREADS", "unset")
        runs = [_serve_once(study, args.idle_s) for _ in range(args.serve_repeats)]
    firsts, cpus, rss = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
    print(
        f"study serve: first 200 on / after median {statistics.median(firsts):.2f} s "
        f"(runs: {', '.join(f'{x:.2f}' for x in firsts)}), "
        f"{statistics.median(cpus):.2f} s CPU; idle RSS median "
        f"{statistics.median(rss):.0f} MiB after {args.idle_s:g} s (OMP_NUM_THREADS={env_threads})"
    )


if __name__ == "__main__":
    main()
