"""``medcrypt report``: one HTML page for one run of the archive job."""

from __future__ import annotations

import html
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcrypt.report._gallery import case_html, full_scale, histograms_html
from medcrypt.report._html import Cell, fmt_float, num, page, table
from medcrypt.report._run_data import (
    RunData,
    load_run,
    sample_gallery,
)

__all__ = ["render_run_report", "write_run_report"]

logger = logging.getLogger(__name__)

_STAGES = ("fetch_s", "decode_s", "pgd_s", "encode_s", "write_s")


def _cards(s: Mapping[str, Any]) -> str:
    items = [
        ("total", "cases", ""),
        ("done", "done", "ok"),
        ("skipped", "skipped", ""),
        ("quarantined", "quarantined", "bad" if s.get("quarantined") else ""),
        ("failed", "failed", "bad" if s.get("failed") else ""),
    ]
    out = [
        f'<div class="card {cls}"><div class="v" data-field="summary.{f}">'
        f'{html.escape(str(s.get(f, "n/a")))}</div><div class="k">{k}</div></div>'
        for f, k, cls in items
    ]
    out.append(
        f'<div class="card"><div class="v"><span data-field="summary.wall_s">'
        f'{fmt_float(s.get("wall_s"), 1)}</span> s</div><div class="k">wall time</div></div>'
    )
    out.append(
        f'<div class="card"><div class="v" data-field="summary.cases_per_s">'
        f'{fmt_float(s.get("cases_per_s"), 2)}</div><div class="k">cases / s</div></div>'
    )
    return f'<div class="cards">{"".join(out)}</div>'


def _summary_table(s: Mapping[str, Any]) -> str:
    rows = []
    for name in (
        "run_id",
        "source",
        "dest",
        "started_at",
        "finished_at",
        "key_fingerprint",
        "model_hash",
        "error",
    ):
        value = s.get(name)
        rows.append(
            (
                name.replace("_", " "),
                Cell("none" if value is None else value, field=f"summary.{name}"),
            )
        )
    return table(["field", "value"], rows, cls="kv")


def _distinct(records: Sequence[Mapping[str, Any]], key: str) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for r in records:
        v = r.get(key)
        if isinstance(v, Mapping):
            v = " · ".join(f"{k} {v[k]}" for k in v)
        counts[str(v) if v is not None else "n/a"] += 1
    return counts.most_common()


def _settings(run: RunData) -> str:
    recs = run.gallery_pool
    if not recs:
        return '<p class="note">No case records: settings are recorded per case.</p>'
    formats = Counter(o.get("format") for r in recs for o in r.get("outputs", ()))
    rows: list[tuple[str, str]] = []
    for key, label in (
        ("pgd", "PGD settings"),
        ("compute", "compute"),
        ("model_arch", "model architecture"),
        ("label_source", "labels"),
    ):
        for value, n in _distinct(recs, key):
            rows.append((label, f"{value}  ({n} cases)"))
    rows.append(("output formats", ", ".join(f"{f} ({n})" for f, n in sorted(formats.items()))))
    n_orig = sum(1 for r in recs if r.get("originals"))
    rows.append(("originals kept", f"{n_orig} of {len(recs)} cases"))
    settings = table(["setting", "value (from the case records)"], rows, cls="kv")
    versions: dict[str, Counter[str]] = defaultdict(Counter)
    for r in [*recs, *run.quarantine]:
        for pkg, ver in (r.get("software") or {}).items():
            versions[pkg][str(ver)] += 1
    soft = table(
        ["software", "version (cases)"],
        [
            (
                pkg,
                Cell(", ".join(f"{v} ({n})" for v, n in c.most_common()), field=f"software.{pkg}"),
            )
            for pkg, c in versions.items()
        ],
        cls="kv",
    )
    return settings + soft


def _timings(run: RunData) -> str:
    totals = run.summary.get("stage_totals") or {}
    recs = run.records
    rows = []
    for stage in _STAGES:
        per_case = [float(r.get("timings", {}).get(stage, 0.0)) for r in recs]
        rows.append(
            (
                stage.removesuffix("_s"),
                num(fmt_float(totals.get(stage), 3), f"summary.stage_totals.{stage}"),
                num(fmt_float(np.median(per_case), 4) if per_case else "n/a"),
                num(fmt_float(max(per_case), 4) if per_case else "n/a"),
            )
        )
    note = (
        "<p class=\"note\">Stage totals are summed over the run's cases (PGD: each case's "
        "share of its batch); wall time includes Ray start-up and scheduling.</p>"
    )
    return (
        table(
            [
                "stage",
                Cell("total s", numeric=True),
                Cell("median per case s", numeric=True),
                Cell("max per case s", numeric=True),
            ],
            rows,
        )
        + note
    )


def _quarantine(run: RunData) -> str:
    if not run.quarantine:
        return '<p class="note">No case is quarantined under this dest.</p>'
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for q in run.quarantine:
        groups[(str(q.get("stage", "?")), str(q.get("error_type", "?")))].append(q)
    parts = []
    for (stage, kind), items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        parts.append(
            f"<h3>{html.escape(kind)} at stage {html.escape(stage)} "
            f'<span class="tag">{len(items)} case{"s" if len(items) > 1 else ""}</span>'
            "</h3>"
        )
        rows = []
        for q in items:
            this = q.get("run_id") == run.run_id
            srcs = " · ".join(
                f"{html.escape(str(src.get('role')))} <code>{html.escape(str(src.get('uri')))}"
                "</code>"
                for src in q.get("sources", ())
            )
            reason = (
                f'<span data-field="quarantine.message">{html.escape(str(q.get("message")))}'
                f'</span><div class="note">{srcs}</div>'
            )
            rows.append(
                (
                    Cell(q.get("case_id"), field="quarantine.case_id"),
                    Cell(reason, raw=True),
                    "this run" if this else f"earlier run {q.get('run_id')}",
                    num(q.get("attempts", 1)),
                )
            )
        parts.append(
            table(
                ["case", "reason (and source files)", "written by", Cell("attempts", numeric=True)],
                rows,
            )
        )
    return "".join(parts)


def render_run_report(run: RunData, *, gallery_size: int = 48, seed: int = 0) -> str:
    """The page as a string."""
    s = run.summary
    pool = run.gallery_pool
    chosen, how = sample_gallery(pool, gallery_size, seed=seed)
    scale = full_scale(chosen)
    whose = (
        "written by this run"
        if run.records
        else "under this dest (this run wrote none; every case was skipped or quarantined)"
    )
    has_orig = any(r.get("originals") for r in chosen)
    warn = (
        '<p class="note err">This page shows unprotected original pixels (from '
        "<code>_originals/</code>): keep it with the originals, never with the release.</p>"
        if has_orig
        else ""
    )
    facts = (
        f'<p class="note">key <code data-field="summary.key_fingerprint">'
        f"{html.escape(str(s.get('key_fingerprint')))}</code> · model "
        f"<code>{html.escape(str(s.get('model_hash', ''))[:23])}…</code> · source "
        f"<code>{html.escape(str(s.get('source')))}</code></p>"
    )
    error = s.get("error")
    if error:
        facts += f'<p class="err">The job stopped early: {html.escape(str(error))}</p>'
    body = [
        _cards(s),
        facts,
        f'<h2 id="quarantine">Quarantined cases <span class="tag" data-field="quarantine.count">'
        f"{len(run.quarantine)}</span></h2>",
        _quarantine(run),
        f'<h2>PSNR and SSIM</h2><p class="note">Cases {whose}; PSNR of an unchanged case '
        "(infinite) left out.</p>",
        histograms_html(pool),
        f'<h2 id="gallery">Gallery</h2><p class="note" data-field="gallery.sampling">Showing '
        f"{html.escape(how)} {whose}. Original and protected share one display window; the "
        f"difference map is protected minus original, red positive, blue negative, full "
        f"colour at ±{scale:.4f} (3x the largest RMS change shown).</p>{warn}",
        '<div class="gallery">' + "".join(case_html(run, r, scale) for r in chosen) + "</div>",
        "<h2>Run summary</h2>",
        _summary_table(s),
        "<h2>Timings</h2>",
        _timings(run),
        "<h2>Settings and software</h2>",
        _settings(run),
    ]
    others = [r for r in run.run_ids if r != run.run_id]
    sub = (
        f"dest {html.escape(run.uri)} · {html.escape(str(s.get('started_at')))} → "
        f"{html.escape(str(s.get('finished_at')))}"
        + (f" · {len(others)} other run(s) under this dest" if others else "")
    )
    return page(f"medcrypt run {run.run_id}", sub, "".join(body))


def write_run_report(
    uri: str,
    out: str | Path,
    *,
    run_id: str | None = None,
    endpoint_url: str | None = None,
    gallery_size: int = 48,
    seed: int = 0,
) -> tuple[Path, RunData]:
    """Read the run under ``uri`` (local or ``s3://``) and write its page to ``out``."""
    run = load_run(uri, run_id, endpoint_url=endpoint_url)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_report(run, gallery_size=gallery_size, seed=seed), encoding="utf-8")
    return path, run
