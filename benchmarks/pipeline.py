"""Archive-job benchmark on a local Ray cluster: where a night goes, is driver memory flat?

Prints two things:

1. **Throughput** of one job (``--mode``: ``unlearnable``, the default mode, with a width-16
   CNN surrogate and the key's 20 steps; or ``paper`` with ``--iters``), against two
   baselines measured in the same run:

   * **PGD only**: the same slices, already in memory, through the same ``Encryptor`` with
     the same batch size, in a Ray task with the actor's one CPU;
   * **IO only**: the same job (fetch, decode, slice choice, quantise, encode, write,
     records, ledger) with the protection replaced by a copy (``CopyActor``: the actor
     returns each slice unchanged, so everything else runs as in the real job).

   End to end is reported against ``min(IO only, PGD only)`` (the slower stage bounds a
   pipeline; goal >= 0.85), as the whole run's rate (wall time, with start-up) and as the
   **steady-state** rate: cases committed between the 25th and 75th percentile of the
   records' commit times (their files' mtimes), over that window. Also: the fixed start-up
   (``ray.init``; job start to the first committed case) and the tail (last commit to the
   end), and the actor's own PGD seconds. On two CPUs the commit times come in one burst at
   the end (fetch tasks hold the CPU the write tasks need until the reads are done), so
   ``--marginal M`` also runs both jobs at ``M`` cases and reports the **marginal rate**
   ``(cases - M) / (wall - wall at M)``, which fixed start-up and tail cancel out of.
2. **driver peak RSS** of ``run_job`` at 100 vs 1,000 cases, each in a fresh driver process
   (``VmHWM``), with cheap PGD (1 iteration) so the 1,000-case run stays short. Goal: flat.

Usage::

    python benchmarks/pipeline.py --cases 160 --memory-cases ''      # unlearnable, throughput
    python benchmarks/pipeline.py --mode paper --cases 160 --iters 100
    python benchmarks/pipeline.py --skip-throughput --memory-cases 100,1000
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPE = (64, 64, 16)
#: set by ``--gpus`` / ``--cpus`` in the driver: the job's GPUs per actor and Ray's CPUs
GPUS = 0
CPUS = 2


def _archive(root: Path, n_unique: int, n_rows: int) -> Path:
    """``n_unique`` phantom cases on disk; a manifest of ``n_rows`` rows cycling over them."""
    from medcrypt.medical import CLASS_NAMES, write_phantom_case

    src = root / "archive"
    for i in range(n_unique):
        if not (src / f"c{i}").exists():
            write_phantom_case(src / f"c{i}", label=i % 5, seed=i, shape=SHAPE)
    manifest = root / f"manifest_{n_rows}.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "image", "mask", "label"])
        for r in range(n_rows):
            i = r % n_unique
            w.writerow(
                [f"case{r:05d}", f"c{i}/image.nii.gz", f"c{i}/mask.nii.gz", CLASS_NAMES[i % 5]]
            )
    return manifest


def _assets(root: Path, mode: str = "paper") -> tuple[Path, Path]:
    """(model, key) for ``mode``: a width-8 ResNet-18 and a mixup key for ``paper``; for
    ``unlearnable`` a width-16 CNN surrogate (untrained: its weights do not change the work)
    and a key naming it."""
    from medcrypt.medical import CLASS_NAMES
    from medcrypt.processing import EncryptionKey, PGDSettings, build_model, save_checkpoint

    model, key = root / f"model-{mode}.pt", root / f"key-{mode}.json"
    if mode == "unlearnable":
        if not model.exists() or not key.exists():
            net = build_model("cnn", 5, width=16)
            digest = save_checkpoint(model, net, arch="cnn", class_names=CLASS_NAMES, width=16)
            pgd = PGDSettings(mode="unlearnable", eps=1.0)
            k = EncryptionKey.generate(CLASS_NAMES, combiner="none", seed=3, pgd=pgd)
            k.with_surrogate([digest]).save(key, overwrite=True)
        return model, key
    if not model.exists():
        save_checkpoint(
            model,
            build_model("resnet18", 5, width=8),
            arch="resnet18",
            class_names=CLASS_NAMES,
            width=8,
        )
    if not key.exists():
        EncryptionKey.generate(CLASS_NAMES, combiner="mixup", seed=3).save(key)
    return model, key


def _pgd(mode: str, iters: int) -> dict[str, Any]:
    if mode == "unlearnable":
        return {"eps": 1.0}  # the key's own steps (20) and step size
    return {"eps": 1.0, "step": 0.1, "iters": iters}


def _config(
    root: Path, manifest: Path, dest: str, iters: int, batch: int, mode: str = "paper"
) -> Any:
    from medcrypt.cluster._config import JobConfig

    model, key = _assets(root, mode)
    return JobConfig(
        source=str(root / "archive"),
        dest=str(root / dest),
        manifest=str(manifest),
        key=str(key),
        model=str(model),
        pgd=_pgd(mode, iters),
        override_key_pgd=True,  # the benchmark sets its own budget and iterations per run
        formats=("png",),
        num_gpus=GPUS,
        actor_cpus=1,
        fetch_cpus=1,
        min_actors=1,
        max_actors=1,
        batch_size=batch,
        actor_start_timeout_s=300,
    )


def _pgd_only_here(
    root: Path, n: int, iters: int, batch: int, mode: str = "paper"
) -> tuple[float, int]:
    """Cases/s of Encryptor alone on the same slices, already decoded; torch thread count."""
    import numpy as np
    import torch

    from medcrypt.medical import load_case_slice
    from medcrypt.processing import EncryptionKey, Encryptor, load_checkpoint

    model, key = _assets(root, mode)
    k = EncryptionKey.load(key)
    enc = Encryptor(
        load_checkpoint(model).model,
        k,
        device="auto",
        settings=k.pgd.model_copy(update=_pgd(mode, iters)),
    )
    src = root / "archive"
    slices = [
        load_case_slice(
            src / f"c{i}/image.nii.gz", src / f"c{i}/mask.nii.gz", case_id=f"c{i}"
        ).array
        for i in range(n)
    ]
    labels = [i % 5 for i in range(n)]
    enc.encrypt(np.stack(slices[:batch]), labels[:batch])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        enc.encrypt(np.stack(slices[s : s + batch]), labels[s : s + batch])
    return n / (time.perf_counter() - t0), torch.get_num_threads()


def pgd_only(root: Path, n: int, iters: int, batch: int, mode: str) -> tuple[float, int]:
    """The PGD-only baseline, run in a Ray actor with the encrypt actor's resources (1 CPU),
    so both sides get the same CPU and thread budget."""
    import ray

    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        runner = ray.remote(num_cpus=1, num_gpus=GPUS)(_pgd_only_here)
        call = runner.remote(root, n, iters, batch, mode)  # type: ignore[call-arg]
        rate, threads = ray.get(call, timeout=3600)
        return float(rate), int(threads)
    finally:
        ray.shutdown()


def _copy_actor() -> Any:
    """The encrypt actor with its protection replaced by a copy (the IO-only baseline).

    Built in a function so cloudpickle ships the class by value to Ray's workers (they
    cannot import this script); everything but ``Encryptor.encrypt`` is the real actor's.
    """
    import numpy as np

    from medcrypt.cluster._encrypt import EncryptActor
    from medcrypt.processing import EncryptionResult

    class CopyActor(EncryptActor):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            key = self.key

            def copy(images: np.ndarray, labels: Any, **_: Any) -> EncryptionResult:
                arr = np.asarray(images, dtype=np.float32)
                zeros = np.zeros(len(arr))
                return EncryptionResult(
                    images=arr.copy(),
                    l2=zeros,
                    linf=zeros,
                    target_success=zeros,
                    targets=[key.targets[int(c)] for c in labels],
                )

            self.encryptor.encrypt = copy  # type: ignore[method-assign]

    return CopyActor


def _commit_times(dest: Path) -> list[float]:
    """The records' commit times (their files' mtimes), sorted."""
    return sorted(p.stat().st_mtime for p in dest.glob("*/record.json"))


def end_to_end(
    root: Path, n: int, iters: int, batch: int, mode: str, *, copy: bool = False
) -> dict[str, float]:
    """One run_job on a fresh dest: wall seconds, the actor's PGD seconds, ``ray.init``
    seconds, first-commit and tail seconds, and the steady-state rate (cases/s between the
    25th and 75th percentile of the commit times). ``copy``: the IO-only baseline."""
    import ray

    from medcrypt.cluster import _job, run_job

    manifest = _archive(root, n, n)
    t_init = time.perf_counter()
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t_init
    real = _job.EncryptActor
    dest = f"dest-{'io' if copy else 'e2e'}-{mode}-{time.time_ns()}"
    try:
        if copy:
            _job.EncryptActor = _copy_actor()  # type: ignore[misc,assignment]
        start = time.time()
        summary = run_job(_config(root, manifest, dest, iters, batch, mode))
        end = time.time()
    finally:
        _job.EncryptActor = real  # type: ignore[misc]
        ray.shutdown()
    assert summary.done == n, summary
    times = _commit_times(root / dest)
    lo, hi = round(0.25 * (len(times) - 1)), round(0.75 * (len(times) - 1))
    window = times[hi] - times[lo]
    return {
        "wall_s": summary.wall_s,
        "pgd_s": summary.stage_totals.pgd_s,
        "init_s": init_s,
        "first_s": times[0] - start,
        "tail_s": end - times[-1],
        "steady": (hi - lo) / window if window > 0 else float("nan"),
        "median_gap_s": statistics.median(b - a for a, b in itertools.pairwise(times)),
    }


_STARTUP = """
import sys, time
t0 = time.perf_counter()
import torch, medcrypt.processing, medcrypt.cluster
t_import = time.perf_counter() - t0
torch.set_num_threads(1)  # as the actor gets (Ray sets OMP_NUM_THREADS to its one CPU)
from pathlib import Path
sys.path.insert(0, {bench!r})
import pipeline
from medcrypt.cluster._prepare import prepare_job
from medcrypt.cluster._encrypt import EncryptActor
root, manifest, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
cfg = pipeline._config(root, manifest, "dest-startup", 20, 8, mode)
t0 = time.perf_counter(); inputs = prepare_job(cfg); t_prep = time.perf_counter() - t0
t0 = time.perf_counter()
actor = EncryptActor(model_blob=Path(cfg.model).read_bytes(), key_blob=inputs.key, pgd=None,
                     device="cpu", counter=None)
t_actor = time.perf_counter() - t0
import numpy as np
from medcrypt.medical import make_phantom_slices
x, y = make_phantom_slices(2, size=64, seed=0)
t0 = time.perf_counter(); actor.encryptor.encrypt(x[:8], y[:8], metrics=False)
t_first = time.perf_counter() - t0
t0 = time.perf_counter(); actor.encryptor.encrypt(x[:8], y[:8], metrics=False)
t_second = time.perf_counter() - t0
print(f"imports (torch, medcrypt) {{t_import:.1f}} s; prepare_job {{t_prep:.1f}} s; actor "
      f"construction (checkpoint, folding) {{t_actor:.1f}} s; first batch of 8 {{t_first:.2f}} s "
      f"vs the second {{t_second:.2f}} s")
"""


def startup(root: Path, mode: str) -> str:
    """What of the fixed start-up is ours, each part timed in a fresh process: imports,
    ``prepare_job``, the actor's construction, and the first batch against the second."""
    manifest = _archive(root, 8, 8)
    code = _STARTUP.format(bench=str(Path(__file__).resolve().parent))
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), str(manifest), mode],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


_CHILD = """
import json, sys, ray
from pathlib import Path
sys.path.insert(0, {bench!r})
import pipeline
from medcrypt.cluster import run_job
root, manifest, dest = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
s = run_job(pipeline._config(root, manifest, dest, 1, 32))
# VmHWM (peak RSS of this process image); ru_maxrss would carry the parent's peak across exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({{"done": s.done, "wall_s": s.wall_s, "maxrss_mb": int(hwm) / 1024}}))
"""


def driver_memory(root: Path, n: int) -> dict[str, float]:
    manifest = _archive(root, 8, n)
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent))
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), str(manifest), f"dest-mem-{n}-{time.time_ns()}"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def throughput(root: Path, args: argparse.Namespace) -> None:
    n, mode = args.cases, args.mode
    e2e = end_to_end(root, n, args.iters, args.batch, mode)
    io = end_to_end(root, n, args.iters, args.batch, mode, copy=True)
    pgd, threads = pgd_only(root, n, args.iters, args.batch, mode)
    what = "20 steps (the key's)" if mode == "unlearnable" else f"{args.iters} iterations"
    print(
        f"{n} cases, mode {mode}, {what}, batch {args.batch}, 64x64 slices, 1 actor, "
        f"{GPUS} GPU(s), Ray with {CPUS} CPUs"
    )
    print(f"PGD only           {pgd:8.3f} cases/s   (in a 1-CPU Ray task, {threads} thread(s))")
    io_whole = n / io["wall_s"]
    print(f"IO only (copy)     {io_whole:8.3f} cases/s whole run, {io['steady']:8.3f} steady")
    bound = min(pgd, io["steady"])
    inside = n / e2e["pgd_s"] if e2e["pgd_s"] > 0 else float("nan")
    print(f"PGD inside the job {inside:8.3f} cases/s   ({inside / pgd:.2f} of PGD only)")
    whole = n / e2e["wall_s"]
    print(
        f"end to end         {whole:8.3f} cases/s whole run ({whole / min(pgd, io_whole):.2f} of "
        f"min(IO whole, PGD)), {e2e['steady']:8.3f} steady ({e2e['steady'] / bound:.2f} of "
        f"min(IO steady, PGD) = {bound:.3f}; goal >= 0.85)"
    )
    print(f"start-up that is ours (fresh process): {startup(root, mode)}")
    if args.marginal:
        # the marginal rate between two run lengths: start-up and tail cancel out
        m = args.marginal
        e2e_m = end_to_end(root, m, args.iters, args.batch, mode)
        io_m = end_to_end(root, m, args.iters, args.batch, mode, copy=True)
        e2e_r = (n - m) / (e2e["wall_s"] - e2e_m["wall_s"])
        io_r = (n - m) / (io["wall_s"] - io_m["wall_s"])
        print(
            f"marginal rate, {m} -> {n} cases: end to end {e2e_r:.3f} cases/s, IO only "
            f"{io_r:.3f} cases/s; end to end / min(IO only, PGD only) = "
            f"{e2e_r / min(io_r, pgd):.2f} (goal >= 0.85); walls at {m}: "
            f"{e2e_m['wall_s']:.1f} s and {io_m['wall_s']:.1f} s"
        )
    for name, r in (("end to end", e2e), ("IO only", io)):
        print(
            f"{name:<10}: wall {r['wall_s']:.1f} s; ray.init {r['init_s']:.1f} s (before the "
            f"wall); job start to first commit {r['first_s']:.1f} s; last commit to end "
            f"{r['tail_s']:.1f} s; median gap between commits {r['median_gap_s']:.2f} s; "
            f"actor PGD {r['pgd_s']:.1f} s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("unlearnable", "paper"), default="unlearnable")
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--memory-cases", default="100,1000")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument(
        "--marginal",
        type=int,
        default=0,
        help="also run both jobs at this many cases: the marginal rate between the two run "
        "lengths, which start-up and tail cancel out of",
    )
    ap.add_argument("--gpus", type=int, default=0, help="GPUs per actor (PGD only gets the same)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    global GPUS, CPUS
    GPUS, CPUS = args.gpus, args.cpus
    root = args.workdir or Path(tempfile.mkdtemp(prefix="medcrypt-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"workdir {root}; cpus {os.cpu_count()}; loadavg {os.getloadavg()}")
    if not args.skip_throughput:
        throughput(root, args)
    for n in (int(x) for x in args.memory_cases.split(",") if x):
        m = driver_memory(root, n)
        print(
            f"driver peak RSS at {n:5d} cases: {m['maxrss_mb']:7.1f} MiB "
            f"({m['done']} done in {m['wall_s']:.0f}s)"
        )
    print(
        f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
