"""Timing shared by the benchmarks: the compared functions run round-robin.

Imported as ``from _timing import ...``: the benchmarks run as scripts from the repository
root (``python benchmarks/x.py``), which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch


def interleaved_medians(
    fns: Mapping[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, object]]:
    """Median seconds and last output of each function, timed round-robin so load drift on a
    shared machine hits all of them alike; one untimed warm-up call each (allocator, cudnn
    autotune, thread pools). CUDA work is synchronised around every timed call.

    ``clock``: wall time by default; :func:`time.process_time` (this process's CPU seconds,
    all threads summed) on a crowded CPU host, where the other jobs' share of the cores
    would otherwise dominate wall times (with one torch thread it is the work itself).
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = clock()
            outs[name] = fn()
            sync()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}, outs
