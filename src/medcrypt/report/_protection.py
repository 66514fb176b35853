"""The protection page: ``medcrypt evaluate``'s JSON (paper Table 12) as figures and tables.

Takes one or several protection reports (the JSON ``ProtectionReport.model_dump_json``
writes, read as plain objects so this package needs no torch). Several reports of one setup
at different budgets or modes add a frontier plot. A ``counter_attacks`` entry (any key whose
name contains ``counter``), where a report has one, is rendered as a table as it stands.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medcrypt.report._html import Cell, fmt_float, fmt_pct, img_tag, num, page, table
from medcrypt.report._images import figure_png, new_figure

__all__ = ["load_protection_reports", "render_protection_page", "write_protection_page"]

_COLOURS = ("#2c5d8f", "#c0392b", "#2f7d4f", "#8e44ad", "#d68910")


def load_protection_reports(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read protection report JSON files, in the order given."""
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def _label(rep: Mapping[str, Any]) -> str:
    pgd = rep.get("pgd", {})
    mode = rep.get("mode") or pgd.get("mode")
    eps = f"eps {fmt_float(pgd.get('eps'), 3).rstrip('0').rstrip('.')}"
    return f"{mode} {eps}" if mode else eps


def _crafter(rep: Mapping[str, Any]) -> str:
    """What wrote the perturbations: the base model, or mode unlearnable's surrogate."""
    return "surrogate" if rep.get("pgd", {}).get("mode") == "unlearnable" else "base model"


def _psnr(rep: Mapping[str, Any]) -> tuple[float, str]:
    """Test-split PSNR for the frontier: foreground where the report has it, else whole."""
    p = rep.get("test_perceptual", {})
    for key in ("psnr_foreground_mean", "foreground_psnr_mean", "fg_psnr_mean"):
        if isinstance(p.get(key), int | float):
            return float(p[key]), "foreground"
    return float(p.get("psnr_mean", float("nan"))), "whole-slice"


def _table12(i: int, rep: Mapping[str, Any]) -> str:
    rows = []
    for j, r in enumerate(rep.get("results", ())):
        f = f"protection.{i}.results.{j}"

        def pair(a: str, b: str, r: Mapping[str, Any] = r, f: str = f) -> Cell:
            return Cell(
                f'<span data-field="{f}.{a}">{fmt_pct(r.get(a))}</span> / '
                f'<span data-field="{f}.{b}">{fmt_pct(r.get(b))}</span>',
                raw=True,
                numeric=True,
            )

        rows.append(
            (
                Cell(r.get("arch"), field=f"{f}.arch"),
                num(r.get("width")),
                pair("clean_final", "clean_peak"),
                pair("encrypted_test_final", "encrypted_test_peak"),
                pair("original_test_final", "original_test_peak"),
                num(fmt_float(r.get("relative_final")), f"{f}.relative_final"),
            )
        )
    head: list[str | Cell] = ["architecture", Cell("width", numeric=True)]
    head += [
        Cell(h, numeric=True)
        for h in (
            "clean test final / peak",
            "encrypted test final / peak",
            "original test final / peak",
            "enc / clean",
        )
    ]
    return table(head, rows)


def _perceptual(i: int, rep: Mapping[str, Any]) -> str:
    rows = []
    for split in ("train", "test"):
        p = rep.get(f"{split}_perceptual", {})
        f = f"protection.{i}.{split}_perceptual"
        rows.append(
            (
                split,
                num(p.get("n")),
                num(fmt_float(p.get("psnr_mean")), f"{f}.psnr_mean"),
                num(fmt_float(p.get("psnr_min"))),
                num(fmt_float(p.get("ssim_mean"), 4), f"{f}.ssim_mean"),
                num(fmt_float(p.get("l2_mean"), 3)),
                num(fmt_float(p.get("linf_max"), 3)),
                num(fmt_pct(p.get("target_success"))),
            )
        )
    head = ["split"] + [
        Cell(h, numeric=True)
        for h in (
            "n",
            "PSNR mean dB",
            "PSNR min dB",
            "SSIM mean",
            "L2 mean",
            "L-inf max",
            "target success",
        )
    ]
    return table(head, rows)


def _recall(rep: Mapping[str, Any]) -> str:
    classes = list(rep.get("class_names", ()))
    with_recall = [r for r in rep.get("results", ()) if r.get("original_test_recall")]
    if not with_recall or not classes:
        return ""
    rows = [
        [r.get("arch")] + [num(fmt_pct(v)) for v in r["original_test_recall"]] for r in with_recall
    ]
    return "<h3>Original-test recall per class, final epoch (low = protected)</h3>" + table(
        ["architecture"] + [Cell(c, numeric=True) for c in classes], rows
    )


def _curves(rep: Mapping[str, Any]) -> str:
    results = list(rep.get("results", ()))
    if not results:
        return ""
    chance = rep.get("chance_accuracy")
    with new_figure(4.2 * len(results), 3.3, ncols=len(results), squeeze=False) as (fig, axes):
        for ax, r in zip(axes[0], results, strict=True):
            hist = list(r.get("history", ()))
            ep = [h["epoch"] for h in hist]
            ax.plot(
                ep,
                [h["encrypted_test"] for h in hist],
                "o-",
                ms=3,
                color=_COLOURS[0],
                label="encrypted test",
            )
            ax.plot(
                ep,
                [h["original_test"] for h in hist],
                "o-",
                ms=3,
                color=_COLOURS[1],
                label="original test",
            )
            clean = [h.get("clean_baseline") for h in hist]
            if all(c is not None for c in clean) and clean:
                ax.plot(ep, clean, "-", color="#555", lw=1.2, label="clean baseline")
            elif r.get("clean_final") is not None:
                ax.axhline(r["clean_final"], color="#555", lw=1.2, label="clean baseline")
            if chance is not None:
                ax.axhline(chance, color="#999", ls=":", lw=1.2, label="chance")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{r.get('arch')} (width {r.get('width')})", fontsize=11)
            ax.grid(alpha=0.25)
        axes[0][0].legend(fontsize=8, frameon=False, loc="lower right")
        png = figure_png(fig)
    return f'<div class="figs">{img_tag(png, "per-epoch accuracy curves " + _label(rep))}</div>'


def _frontier(reports: Sequence[Mapping[str, Any]]) -> str:
    pts = sorted(((_psnr(r), r) for r in reports), key=lambda t: t[0][0])
    kind = pts[0][0][1]
    archs = sorted({res["arch"] for _, r in pts for res in r.get("results", ())})
    with new_figure(6.4, 3.8) as (fig, ax):
        for k, arch in enumerate(archs):
            xs, peak, final, clean = [], [], [], []
            for (x, _), r in pts:
                res = next((a for a in r.get("results", ()) if a["arch"] == arch), None)
                if res is not None:
                    xs.append(x)
                    peak.append(res["original_test_peak"])
                    final.append(res["original_test_final"])
                    clean.append(res["clean_final"])
            c = _COLOURS[k % len(_COLOURS)]
            ax.plot(xs, peak, "o-", color=c, label=f"{arch} original-test peak")
            ax.plot(xs, final, "s--", color=c, alpha=0.6, ms=4, label=f"{arch} final")
            ax.axhline(
                sum(clean) / len(clean), color=c, lw=0.9, ls="-.", label=f"{arch} clean baseline"
            )
        chance = reports[0].get("chance_accuracy")
        if chance is not None:
            ax.axhline(chance, color="#999", ls=":", label="chance")
        ax.set_xlabel(f"test PSNR, {kind} (dB)")
        ax.set_ylabel("accuracy on original test images")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        png = figure_png(fig)
    return (
        '<h2>Frontier</h2><p class="note">One point per budget: image quality against what '
        "an attacker's model scores on real images (lower is better protection).</p>"
        f'<div class="figs">{img_tag(png, "protection frontier")}</div>'
    )


def _cell(key: str, value: object) -> object:
    if isinstance(value, float):
        return num(fmt_pct(value) if "acc" in key or "recall" in key else f"{value:.4g}")
    if isinstance(value, int | bool):
        return num(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return value


def _counter_attacks(i: int, rep: Mapping[str, Any]) -> str:
    parts = []
    for key, value in rep.items():
        if "counter" not in key.lower():
            continue
        rows = list(value.values()) if isinstance(value, Mapping) else value
        if isinstance(value, Mapping) and not all(isinstance(v, Mapping) for v in rows):
            rows = [value]
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows) or not rows:
            continue
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        parts.append(
            f'<h3 data-field="protection.{i}.{html.escape(key)}">Counter-attacks '
            f"(<code>{html.escape(key)}</code>, {len(rows)} rows)</h3>"
        )
        parts.append(table(cols, [[_cell(c, r.get(c, "")) for c in cols] for r in rows]))
    return "".join(parts)


def render_protection_page(
    reports: Sequence[Mapping[str, Any]], *, notes: Sequence[str] = (), title: str | None = None
) -> str:
    """The page as a string; ``notes`` are shown under the title (e.g. a verdict)."""
    if not reports:
        raise ValueError("no protection report to render")
    first = reports[0]
    body = [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    body.append(
        f"<p>{len(first.get('class_names', ()))} classes "
        f"({html.escape(', '.join(first.get('class_names', ())))})"
        f"; {first.get('n_train')} training / {first.get('n_test')} test slices of "
        f"{'x'.join(str(v) for v in first.get('image_shape', ()))}; {_crafter(first)} "
        f"{html.escape(str(first.get('base_arch')))}, clean test accuracy "
        f'<span data-field="protection.0.base_test_accuracy">'
        f"{fmt_pct(first.get('base_test_accuracy'))}</span>; chance "
        f'<span data-field="protection.0.chance_accuracy">{fmt_pct(first.get("chance_accuracy"))}'
        "</span> (always guessing the most frequent test class).</p>"
        '<p class="note">Protocol (paper Table 12): models trained on the encrypted training '
        "set, scored each epoch on the encrypted test set and on the original test set, beside a "
        "clean baseline trained with the same seed on the original training set. Protection "
        "works when encrypted-test accuracy stays near the clean baseline while original-test "
        "accuracy falls toward chance.</p>"
    )
    if first.get("pgd", {}).get("mode") == "unlearnable":
        body.append(
            '<p class="note">Mode unlearnable: the surrogate is crafted on a sample of the '
            "training split (min-min), every slice is released on its own toward its own "
            "label; judged by the peak original-test balanced accuracy (at most 50%) with the "
            "release still learnable on itself (encrypted-test at least 90% of clean).</p>"
        )
    if len(reports) > 1:
        body.append(_frontier(reports))
    for i, rep in enumerate(reports):
        pgd = rep.get("pgd", {})
        body.append(
            f'<h2 id="budget-{i}">{html.escape(_label(rep))}: test PSNR '
            f"{fmt_float(rep.get('test_perceptual', {}).get('psnr_mean'))} dB</h2>"
            f'<p class="note">key <code>{html.escape(str(rep.get("key_fingerprint")))}</code>, '
            f"combiner {html.escape(str(rep.get('combiner')))}, PGD step "
            f"{pgd.get('step')}, {pgd.get('iters')} iterations; "
            f"{rep.get('settings', {}).get('train', {}).get('epochs')} epochs; "
            f"{fmt_float(rep.get('seconds'), 0)} s; dataset {html.escape(str(rep.get('dataset')))}"
            "</p>"
        )
        body += [
            "<h3>Table 12</h3>",
            _table12(i, rep),
            "<h3>Per-epoch accuracy</h3>",
            _curves(rep),
            "<h3>Released images against the originals</h3>",
            _perceptual(i, rep),
            _recall(rep),
            _counter_attacks(i, rep),
        ]
    sub = f"{len(reports)} budget(s) · {html.escape(str(first.get('dataset')))}"
    return page(title or "medcrypt protection report", sub, "".join(body))


def write_protection_page(
    reports: Sequence[Mapping[str, Any]], out: str | Path, *, notes: Sequence[str] = ()
) -> Path:
    """Write :func:`render_protection_page` to ``out``."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_protection_page(reports, notes=notes), encoding="utf-8")
    return path
