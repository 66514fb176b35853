"""Write a tally: JSON, Markdown, HTML, a Figure 6-style chart and the iMRMC input files.

The Markdown and HTML reports hold, for every reader and pooled: the Figure 6 categories
(with "both wrong" split by same / different diagnoses) and their Wilson CIs beside the
paper's Figure 6, every statistic, and the confusion matrix of the diagnoses on original vs
protected images; then agreement across readers (naming the images each statistic used when
readers have not all answered the same images) and when each session came in. p-values below
0.001 are written ``< 0.001``, never ``0.000``.

``report.*`` and ``figure6.png`` hold no case ID and no image-to-case mapping. ``imrmc/``
is unblinded (case IDs, truth): created 0700 with files 0600 (see :mod:`._imrmc`).
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from medcrypt.study._chart import LABELS, draw_figure6
from medcrypt.study._imrmc import imrmc_files, write_private_file
from medcrypt.study._key import UnblindingKey
from medcrypt.study._log import AnswerRecord
from medcrypt.study._tally import FIGURE6_SPLIT, PAPER_FIGURE6, PairedSummary, Stat, TallyReport

__all__ = [
    "draw_figure6",
    "format_p",
    "imrmc_files",
    "render_html_body",
    "render_markdown",
    "write_report",
]

logger = logging.getLogger(__name__)

Table = tuple[list[str], list[list[str]]]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def format_p(p: float | None) -> str:
    """A p-value as a person reads it: ``< 0.001`` below 0.001, else three decimals."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _stat_cell(s: Stat) -> str:
    if s.value is None:
        text = str(s.not_defined)
    else:
        if s.p_value is not None:
            shown = format_p(s.value)
            text = f"p {shown}" if shown.startswith("<") else f"p = {shown}"
        else:
            text = _fmt(s.value)
        if s.ci_low is not None and s.ci_high is not None:
            text += f" [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]"
        if s.statistic is not None:
            text += f" (stat {s.statistic:.4g}" + (f", df {s.df:g})" if s.df is not None else ")")
        if s.not_defined:
            text += f"; {s.not_defined}"
    if s.note:
        text += f" — {s.note}"
    return text


def _pct(g: PairedSummary, cat: str) -> str:
    f = g.figure6
    p, band = f.percent.get(cat), f.ci_percent.get(cat)
    if p is None:
        return "—"
    return f"{p:.1f}%" + (f" [{band[0]:.1f}, {band[1]:.1f}]" if band else "")


def _figure6_table(report: TallyReport) -> Table:
    groups = [*report.per_reader, report.pooled]
    head = ["category", "paper Figure 6", *(f"{g.label} (n={g.n_pairs})" for g in groups)]
    rows = [
        [LABELS[c], f"{PAPER_FIGURE6[c]:.0f}%", *(_pct(g, c) for g in groups)]
        for c in FIGURE6_SPLIT
    ]
    rows.append(
        [
            "same diagnosis",
            "95%",
            *(
                _fmt(100 * g.same_diagnosis.value, 1) + "%"
                if g.same_diagnosis.value is not None
                else "—"
                for g in groups
            ),
        ]
    )
    return head, rows


def _summary_rows(g: PairedSummary) -> list[list[str]]:
    return [
        ["same diagnosis (proportion, Wilson CI)", _stat_cell(g.same_diagnosis)],
        ["Cohen's kappa original vs protected", _stat_cell(g.cohen_kappa)],
        [f"exact McNemar (b={g.mcnemar_b}, c={g.mcnemar_c})", _stat_cell(g.mcnemar)],
        ["Bowker symmetry", _stat_cell(g.bowker)],
        ["Stuart-Maxwell homogeneity", _stat_cell(g.stuart_maxwell)],
        ["accuracy on originals", _stat_cell(g.accuracy_original)],
        ["accuracy on protected", _stat_cell(g.accuracy_protected)],
        [
            "accuracy difference protected − original (Tango score CI)",
            _stat_cell(g.accuracy_difference),
        ],
        ["the same with the Wald CI (comparison only)", _stat_cell(g.accuracy_difference_wald)],
        ["non-inferiority (Tango score test)", _stat_cell(g.non_inferiority)],
        [
            "non-inferior",
            "not decided" if g.non_inferior is None else ("yes" if g.non_inferior else "no"),
        ],
    ]


def _confusion(report: TallyReport, g: PairedSummary) -> Table:
    head = ["original \\ protected", *report.classes]
    rows = [[c, *(str(v) for v in row)] for c, row in zip(report.classes, g.confusion, strict=True)]
    return head, rows


def _agreement(report: TallyReport) -> Table:
    a = report.across_readers
    rows = [
        [s, _stat_cell(a.fleiss_kappa[s]), _stat_cell(a.krippendorff_alpha[s])]
        for s in ("original", "protected", "all")
    ]
    return ["images", "Fleiss' kappa", "Krippendorff's alpha (nominal)"], rows


def _sessions(report: TallyReport) -> Table:
    rows = [
        [
            t.reader,
            str(t.session),
            t.not_before.isoformat() if t.not_before else "—",
            t.ingested_on.isoformat(),
            t.status + (f": {t.detail}" if t.detail else ""),
        ]
        for t in report.sessions
    ]
    return ["reader", "session", "not before", "ingested", "timing"], rows


def _md_table(table: Table) -> list[str]:
    head, rows = table

    def cell(x: str) -> str:
        return x.replace("|", "\\|")

    return [
        "| " + " | ".join(cell(h) for h in head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows),
        "",
    ]


def _html_table(table: Table) -> str:
    e = html.escape
    head, rows = table
    return (
        "<table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
    )


def _sections(report: TallyReport) -> list[tuple[int, str, list[Table | str]]]:
    """(heading level, title, blocks) in order; shared by Markdown and HTML."""
    level = 100 * (1 - report.alpha)
    out: list[tuple[int, str, list[Table | str]]] = [
        (
            2,
            "Figure 6: ours beside the paper's",
            [
                f"Percent of paired readings with {level:g}% Wilson score CIs. The paper's "
                "Figure 6 (3 doctors, brain MRI) reports 95% same diagnoses = 72% both correct + "
                "23% both wrong, so its both-wrong readings are same-diagnosis.",
                _figure6_table(report),
            ],
        )
    ]
    for g in [*report.per_reader, report.pooled]:
        out.append(
            (
                2,
                f"{g.label} ({g.n_pairs} paired readings)",
                [(["quantity", "value"], _summary_rows(g))],
            )
        )
        out.append(
            (
                3,
                f"{g.label}: diagnoses on original (rows) vs protected (columns)",
                [_confusion(report, g)],
            )
        )
    out.append(
        (
            2,
            f"Agreement across readers ({report.across_readers.n_readers} readers)",
            [_agreement(report)],
        )
    )
    flagged = [t for t in report.sessions if t.status != "on time"]
    out.append(
        (
            2,
            "Sessions: not-before dates and ingest dates",
            [
                f"Washout {report.washout_days} days. "
                + (
                    f"{len(flagged)} session(s) early or late (below)."
                    if flagged
                    else "Every ingested session came in on time."
                ),
                _sessions(report),
            ],
        )
    )
    return out


def render_markdown(report: TallyReport) -> str:
    """The tally as a Markdown document."""
    level = 100 * (1 - report.alpha)
    lines = [
        f"# Reader study {report.study}: tally",
        "",
        f"Design `{report.design}`, {report.n_cases} cases, readers "
        f"{', '.join(report.readers)}, {report.n_answers} answers. Intervals are "
        f"{level:g}% CIs; non-inferiority margin {report.non_inferiority_margin:g} on accuracy.",
        "",
        "![Figure 6](figure6.png)",
        "",
    ]
    lines += [f"- note: {n}" for n in report.notes]
    if report.notes:
        lines.append("")
    for depth, title, blocks in _sections(report):
        lines += ["#" * depth + f" {title}", ""]
        for block in blocks:
            lines += [block, ""] if isinstance(block, str) else _md_table(block)
    lines += [
        "Pooled statistics treat every (reader, case) pair as independent; for a multi-reader "
        "multi-case analysis use the iMRMC files in `imrmc/` (unblinded: keep with the key).",
        "",
    ]
    return "\n".join(lines)


def render_html_body(report: TallyReport, *, chart_src: str = "figure6.png") -> str:
    """The tally as an HTML fragment (headings, the chart, tables; no ``<style>``), every
    value escaped: ``report.html``'s body, and what the coordinator's web page shows."""
    e = html.escape
    parts = [
        f"<h1>Reader study {e(report.study)}: tally</h1>",
        f"<p>Design <code>{e(report.design)}</code>, {report.n_cases} cases, "
        f"{report.n_answers} answers, CIs at {100 * (1 - report.alpha):g}%, "
        f"non-inferiority margin {report.non_inferiority_margin:g}.</p>",
        f'<img src="{e(chart_src)}" alt="Figure 6-style chart">',
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    for depth, title, blocks in _sections(report):
        parts.append(f"<h{depth}>{e(title)}</h{depth}>")
        for block in blocks:
            parts.append(f"<p>{e(block)}</p>" if isinstance(block, str) else _html_table(block))
    return "".join(parts)


def _render_html(report: TallyReport) -> str:
    e = html.escape
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(report.study)}: tally</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1em}td,th{border:1px solid #999;padding:.2em .5em;text-align:left}"
        "img{max-width:100%}</style></head><body>" + render_html_body(report) + "</body></html>\n"
    )


def write_report(
    report: TallyReport,
    key: UnblindingKey,
    answers: Sequence[AnswerRecord],
    out_dir: Path,
) -> dict[str, Path]:
    """Write report.json, report.md, report.html, figure6.png and imrmc/*; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    imrmc_dir = out_dir / "imrmc"
    imrmc_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(imrmc_dir, 0o700)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "chart": out_dir / "figure6.png",
    }
    data = report.model_dump(mode="json")
    paths["json"].write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(_render_html(report), encoding="utf-8")
    draw_figure6(report, paths["chart"])
    for name, text in imrmc_files(key, answers).items():
        target = imrmc_dir / name
        write_private_file(target, text)
        paths[f"imrmc/{name}"] = target
    logger.info("wrote the tally report to %s (imrmc/ is unblinded, owner-only)", out_dir)
    return paths
