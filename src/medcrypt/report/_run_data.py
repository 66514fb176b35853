"""What a run report is made from, read through the storage layer (local folder or S3).

Records are read as plain JSON objects, not re-validated: the report must render records of
older and newer schema versions alike (fields it does not know are ignored, fields it needs
and does not find are shown as ``n/a``).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcrypt.errors import ConfigError, StorageError
from medcrypt.storage import ObjectStore, open_store

__all__ = ["RunData", "foreground_metrics", "load_run", "sample_gallery"]

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """One run's summary and the records under its dest."""

    uri: str
    run_id: str
    summary: dict[str, Any]
    #: case records written by this run (``record.run_id == run_id``)
    records: list[dict[str, Any]]
    #: every case record under dest, whichever run wrote it
    all_records: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    store: ObjectStore
    run_ids: list[str] = field(default_factory=list)

    @property
    def gallery_pool(self) -> list[dict[str, Any]]:
        """The cases the gallery and histograms show: this run's, else all under dest."""
        return self.records or self.all_records


def _read_json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(store.get(key).decode("utf-8"))
    except (StorageError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("skipping unreadable %s: %s", key, exc)
        return None
    return data if isinstance(data, dict) else None


def _read_many(store: ObjectStore, keys: Sequence[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = list(pool.map(lambda k: _read_json(store, k), keys))
    return [f for f in found if f is not None]


def load_run(uri: str, run_id: str | None = None, *, endpoint_url: str | None = None) -> RunData:
    """Read ``_runs/<run_id>/summary.json`` (default: the latest run) and the records.

    Raises:
        ConfigError: no run under ``uri``, or ``run_id`` is not one of them (naming those
            that exist).
    """
    store = open_store(uri, endpoint_url=endpoint_url)
    summaries, records, quarantine = [], [], []
    for info in store.list():
        parts = info.key.split("/")
        if len(parts) == 3 and parts[0] == "_runs" and parts[2] == "summary.json":
            summaries.append(info.key)
        elif len(parts) == 2 and parts[0] == "_quarantine" and parts[1].endswith(".json"):
            quarantine.append(info.key)
        elif len(parts) == 2 and parts[1] == "record.json" and not parts[0].startswith("_"):
            records.append(info.key)
    runs = {s.split("/")[1]: s for s in summaries}
    if not runs:
        raise ConfigError(
            f"no run summary under {uri}/_runs/ (is this an archive job's dest?)", uri=uri
        )
    loaded = {rid: _read_json(store, key) for rid, key in runs.items()}
    valid = {rid: s for rid, s in loaded.items() if s is not None}
    if run_id is None:
        if not valid:
            raise ConfigError(f"no readable run summary under {uri}/_runs/", uri=uri)
        run_id = max(valid, key=lambda r: (str(valid[r].get("started_at", "")), r))
    if run_id not in valid:
        raise ConfigError(
            f"no run {run_id!r} under {uri}/_runs/; runs there: {', '.join(sorted(runs))}",
            uri=uri,
        )
    all_records = sorted(_read_many(store, records), key=lambda r: str(r.get("case_id")))
    return RunData(
        uri=store.uri,
        run_id=run_id,
        summary=valid[run_id],
        records=[r for r in all_records if r.get("run_id") == run_id],
        all_records=all_records,
        quarantine=sorted(_read_many(store, quarantine), key=lambda r: str(r.get("case_id"))),
        store=store,
        run_ids=sorted(runs),
    )


def foreground_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Foreground PSNR / SSIM of a record's metrics, under whichever name the record uses.

    Accepts ``{"foreground": {"psnr": .., "ssim": ..}}`` as well as flat names containing
    ``foreground`` or ``fg`` next to ``psnr`` / ``ssim`` (``psnr_foreground``, ``fg_ssim``).
    Empty when the record has none.
    """
    found: dict[str, float] = {}
    nested = metrics.get("foreground")
    if isinstance(nested, Mapping):
        for name in ("psnr", "ssim"):
            if isinstance(nested.get(name), int | float):
                found[name] = float(nested[name])
    for key, value in metrics.items():
        low = key.lower()
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if "foreground" in low or low.startswith("fg_") or low.endswith("_fg"):
            for name in ("psnr", "ssim"):
                if name in low:
                    found.setdefault(name, float(value))
    return found


def sample_gallery(
    records: Sequence[dict[str, Any]], size: int, *, seed: int = 0
) -> tuple[list[dict[str, Any]], str]:
    """Pick the gallery's cases and say how: all of them, or the worst plus a random draw.

    Above ``size`` cases, the ``size // 6`` (at least 1) with the lowest PSNR are always
    shown (those a reviewer must see), the rest drawn uniformly without replacement with
    ``seed``; shown in case-id order.
    """
    n = len(records)
    if n <= size:
        return list(records), f"all {n} cases"

    def psnr(r: dict[str, Any]) -> float:
        v = r.get("metrics", {}).get("psnr")
        return float(v) if isinstance(v, int | float) else float("inf")

    worst_n = max(1, size // 6)
    order = sorted(range(n), key=lambda i: (psnr(records[i]), i))
    worst = order[:worst_n]
    rest = sorted(set(range(n)) - set(worst))
    drawn = random.Random(seed).sample(rest, size - worst_n)
    chosen = sorted(worst + drawn, key=lambda i: str(records[i].get("case_id")))
    how = (
        f"{size} of {n} cases: the {worst_n} with the lowest PSNR and {size - worst_n} drawn "
        f"uniformly at random from the rest (seed {seed})"
    )
    return [records[i] for i in chosen], how


def metric_values(records: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    """One metric over records (finite values only; ``inf`` PSNR of an unchanged case left out)."""
    vals = [r.get("metrics", {}).get(name) for r in records]
    arr = np.array([float(v) for v in vals if isinstance(v, int | float)], dtype=np.float64)
    return arr[np.isfinite(arr)]
