"""Write a tally: JSON, Markdown, HTML, a Figure 6-style chart and the iMRMC input files.

iMRMC export (``imrmc/<class>.imrmc``), following the iMRMC input format (a free-text study
description holding ``N0:``, ``N1:``, ``NR:``, ``NM:`` lines, then ``BEGIN DATA:``, then one
``readerID,caseID,modalityID,score`` row per observation, with truth rows
``-1,caseID,0,truth``). iMRMC analyses binary tasks, and this study has a closed list of
several diagnoses, so one file is written per class, one-vs-rest:

- truth = 1 when the case's ground truth is that class, else 0;
- score = 1 when the reader gave that diagnosis, else 0 (a binary score);
- modality 1 = original image, 2 = protected image;
- reader and case IDs are integers 1..R and 1..K; ``imrmc/ids.csv`` maps them back to reader
  names and case IDs (the export is unblinded: keep it with the key, not with packets).

Each file can be loaded by the iMRMC Java application or the R package (``doIMRMC``); the
pair of modalities is the comparison of interest.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medcrypt.study._ingest import AnswerRecord
from medcrypt.study._key import UnblindingKey
from medcrypt.study._tally import FIGURE6_CATEGORIES, PairedSummary, Stat, TallyReport

__all__ = ["draw_figure6", "imrmc_files", "render_markdown", "write_report"]

logger = logging.getLogger(__name__)

_LABELS = {
    "both_correct": "both correct",
    "both_wrong": "both wrong",
    "right_only_original": "right only on original",
    "right_only_protected": "right only on protected",
}
_COLOURS = {
    "both_correct": "#2e7d32",
    "both_wrong": "#c62828",
    "right_only_original": "#1565c0",
    "right_only_protected": "#f9a825",
}
_MODALITY = {"original": 1, "protected": 2}


def imrmc_files(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> dict[str, str]:
    """File name -> text of every iMRMC export file (see the module docstring)."""
    readers = list(key.config.readers)
    cases = list(key.cases())
    truth = key.cases()
    r_num = {r: i for i, r in enumerate(readers, start=1)}
    c_num = {c: i for i, c in enumerate(cases, start=1)}
    rows = sorted(
        (
            r_num[a.reader],
            c_num[key.images[a.image_id].case_id],
            _MODALITY[key.images[a.image_id].version],
            a.diagnosis,
        )
        for a in answers
    )
    files: dict[str, str] = {}
    skipped: list[str] = []
    for cls in key.config.classes:
        n1 = sum(1 for c in cases if truth[c] == cls)
        if n1 in (0, len(cases)):
            # iMRMC needs signal-present and signal-absent cases; this class has only one kind.
            skipped.append(f"{cls} (N1 = {n1} of {len(cases)} cases)")
            continue
        out = io.StringIO()
        out.write(
            f"medcrypt reader study {key.config.name}: one-vs-rest for class {cls}\n"
            "truth 1 = ground truth is this class; score 1 = reader gave this diagnosis\n"
            "modality 1 = original image, modality 2 = protected image\n"
            "reader and case numbers are mapped in ids.csv\n"
            f"N0: {len(cases) - n1}\nN1: {n1}\nNR: {len(readers)}\nNM: 2\n"
            "BEGIN DATA:\n"
        )
        for case in cases:
            out.write(f"-1,{c_num[case]},0,{int(truth[case] == cls)}\n")
        for reader, case_n, modality, dx in rows:
            out.write(f"{reader},{case_n},{modality},{int(dx == cls)}\n")
        files[f"{cls}.imrmc"] = out.getvalue()
    ids = io.StringIO()
    writer = csv.writer(ids, lineterminator="\n")
    writer.writerow(["kind", "number", "name"])
    writer.writerows(["reader", n, r] for r, n in r_num.items())
    writer.writerows(["case", n, c] for c, n in c_num.items())
    writer.writerows([["modality", 1, "original"], ["modality", 2, "protected"]])
    files["ids.csv"] = ids.getvalue()
    files["README.txt"] = _IMRMC_README + (
        "\nNo file for these classes (iMRMC needs cases with and without the class):\n"
        + "".join(f"  {s}\n" for s in skipped)
        if skipped
        else ""
    )
    return files


_IMRMC_README = """iMRMC input files written by medcrypt study tally (unblinded: keep with the key).

One file per diagnosis class, <class>.imrmc, for a one-vs-rest binary task:
  - free-text description lines, then N0 (cases without the class), N1 (cases with it),
    NR (readers) and NM (modalities = 2), then the line "BEGIN DATA:";
  - truth rows:   -1,<case>,0,<1 if the ground truth is this class else 0>
  - reader rows:  <reader>,<case>,<modality>,<1 if the reader gave this diagnosis else 0>
    with modality 1 = original image, 2 = protected image.
Reader and case numbers are listed in ids.csv. Scores are binary (0/1), so the AUC that
iMRMC reports per modality is the mean of sensitivity and specificity for that class; the
modality comparison (1 vs 2) is the question of the study.
"""


def draw_figure6(report: TallyReport, path: Path) -> None:
    """Stacked horizontal bars of the Figure 6 categories, one per reader and pooled."""
    groups = [*report.per_reader, report.pooled]
    fig = Figure(figsize=(8, 1.2 + 0.6 * len(groups)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{g.label} (n={g.n_pairs})" for g in groups]
    left = [0.0] * len(groups)
    for cat in FIGURE6_CATEGORIES:
        widths = [g.figure6.percent[cat] or 0.0 for g in groups]
        bars = ax.barh(names, widths, left=left, color=_COLOURS[cat], label=_LABELS[cat])
        for bar, w in zip(bars, widths, strict=True):
            if w >= 4:
                ax.text(
                    bar.get_x() + w / 2,
                    bar.get_y() + bar.get_height() / 2,
                    f"{w:.0f}%",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize=8,
                )
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of paired readings (original vs protected image of the same case)")
    ax.set_title(f"Reader study {report.study}: diagnoses on original vs protected images")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120, metadata={"Software": None})


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _stat_cell(s: Stat) -> str:
    if s.value is None:
        return str(s.not_defined)
    text = _fmt(s.value)
    if s.ci_low is not None and s.ci_high is not None:
        text += f" [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]"
    if s.statistic is not None:
        text += f" (stat {_fmt(s.statistic)}" + (f", df {s.df:g})" if s.df is not None else ")")
    if s.not_defined:
        text += f"; {s.not_defined}"
    return text


def _summary_rows(g: PairedSummary) -> list[tuple[str, str]]:
    f = g.figure6
    rows = [
        (
            _LABELS[c],
            f"{getattr(f, c)} ({_fmt(f.percent[c], 1)}%)",
        )
        for c in FIGURE6_CATEGORIES
    ]
    rows += [
        ("both wrong, same diagnosis", str(f.both_wrong_same_diagnosis)),
        ("both wrong, different diagnoses", str(f.both_wrong_different_diagnosis)),
        ("same diagnosis (proportion, Wilson CI)", _stat_cell(g.same_diagnosis)),
        ("Cohen's kappa original vs protected", _stat_cell(g.cohen_kappa)),
        (f"exact McNemar p (b={g.mcnemar_b}, c={g.mcnemar_c})", _stat_cell(g.mcnemar)),
        ("Bowker symmetry p", _stat_cell(g.bowker)),
        ("Stuart-Maxwell homogeneity p", _stat_cell(g.stuart_maxwell)),
        ("accuracy on originals", _stat_cell(g.accuracy_original)),
        ("accuracy on protected", _stat_cell(g.accuracy_protected)),
        ("accuracy difference protected − original", _stat_cell(g.accuracy_difference)),
        ("non-inferiority p", _stat_cell(g.non_inferiority)),
        (
            "non-inferior",
            "not decided" if g.non_inferior is None else ("yes" if g.non_inferior else "no"),
        ),
    ]
    return rows


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
        "For comparison, the paper's Figure 6 (3 doctors, brain MRI): both correct 72%, both "
        "wrong 23%, right only on original 2%, right only on protected 3% (same diagnosis 95%).",
        "",
    ]
    for note in report.notes:
        lines.append(f"- note: {note}")
    if report.notes:
        lines.append("")
    for g in [*report.per_reader, report.pooled]:
        lines += [
            f"## {g.label} ({g.n_pairs} paired readings)",
            "",
            "| quantity | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in _summary_rows(g)]
        lines.append("")
    short = [c[:12] for c in report.classes]
    lines += [
        "## Pooled diagnoses: original (rows) vs protected (columns)",
        "",
        "| original \\ protected | " + " | ".join(short) + " |",
        "|---|" + "---|" * len(short),
    ]
    for name, row in zip(short, report.pooled.confusion, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines.append("")
    a = report.across_readers
    lines += [
        f"## Agreement across readers ({a.n_readers} readers)",
        "",
        "| images | Fleiss' kappa | Krippendorff's alpha (nominal) |",
        "|---|---|---|",
    ]
    for subset in ("original", "protected", "all"):
        lines.append(
            f"| {subset} | {_stat_cell(a.fleiss_kappa[subset])} | "
            f"{_stat_cell(a.krippendorff_alpha[subset])} |"
        )
    lines += [
        "",
        "Pooled statistics treat every (reader, case) pair as independent; for a multi-reader "
        "multi-case analysis use the iMRMC files in `imrmc/`.",
        "",
    ]
    return "\n".join(lines)


def _render_html(report: TallyReport) -> str:
    e = html.escape
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report.study)}: tally</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.2em .5em;text-align:left}</style></head><body>",
        f"<h1>Reader study {e(report.study)}: tally</h1>",
        f"<p>Design <code>{e(report.design)}</code>, {report.n_cases} cases, "
        f"{report.n_answers} answers, CIs at {100 * (1 - report.alpha):g}%, "
        f"non-inferiority margin {report.non_inferiority_margin:g}.</p>",
        '<img src="figure6.png" alt="Figure 6-style chart">',
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    for g in [*report.per_reader, report.pooled]:
        parts.append(f"<h2>{e(g.label)} ({g.n_pairs} paired readings)</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_rows(g)]
        parts.append("</table>")
    a = report.across_readers
    parts.append(
        f"<h2>Agreement across readers ({a.n_readers})</h2><table><tr><th>images</th>"
        "<th>Fleiss' kappa</th><th>Krippendorff's alpha (nominal)</th></tr>"
    )
    for subset in ("original", "protected", "all"):
        parts.append(
            f"<tr><td>{subset}</td><td>{e(_stat_cell(a.fleiss_kappa[subset]))}</td>"
            f"<td>{e(_stat_cell(a.krippendorff_alpha[subset]))}</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def write_report(
    report: TallyReport,
    key: UnblindingKey,
    answers: Sequence[AnswerRecord],
    out_dir: Path,
) -> dict[str, Path]:
    """Write report.json, report.md, report.html, figure6.png and imrmc/*; return the paths."""
    out_dir = Path(out_dir)
    (out_dir / "imrmc").mkdir(parents=True, exist_ok=True)
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
        target = out_dir / "imrmc" / name
        target.write_text(text, encoding="utf-8")
        paths[f"imrmc/{name}"] = target
    logger.info("wrote the tally report to %s", out_dir)
    return paths
