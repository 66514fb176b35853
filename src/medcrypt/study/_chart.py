"""The Figure 6-style chart of a tally, with the paper's Figure 6 beside ours.

Left: one stacked bar per reader, pooled, and the paper, with "both wrong" split into "same
diagnosis" and "different diagnoses"; every non-empty segment is labelled (segments too narrow
for their label get it above or below the bar, with a leader line). Right: each category's
proportion with its Wilson score CI, per reader and pooled, and the paper's value as a
diamond.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medcrypt.study._tally import FIGURE6_SPLIT, PAPER_FIGURE6, TallyReport

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn, not with the study package
    from matplotlib.figure import Figure

__all__ = ["COLOURS", "LABELS", "draw_figure6", "figure6_figure"]

LABELS = {
    "both_correct": "both correct",
    "both_wrong": "both wrong",
    "both_wrong_same_diagnosis": "both wrong, same diagnosis",
    "both_wrong_different_diagnosis": "both wrong, different diagnoses",
    "right_only_original": "right only on original",
    "right_only_protected": "right only on protected",
}
COLOURS = {
    "both_correct": "#2e7d32",
    "both_wrong_same_diagnosis": "#c62828",
    "both_wrong_different_diagnosis": "#ef9a9a",
    "right_only_original": "#1565c0",
    "right_only_protected": "#f9a825",
}
_TEXT_ON = {
    "both_correct": "white",
    "both_wrong_same_diagnosis": "white",
    "both_wrong_different_diagnosis": "black",
    "right_only_original": "white",
    "right_only_protected": "black",
}
_INSIDE_MIN = 7.0  # percent: narrower segments get their label outside the bar
_PAPER = "paper Figure 6 (3 doctors)"
_ROW = 1.8  # vertical distance between bars, room for labels above and below


def _label(w: float) -> str:
    """Whole percentages as such, others with one decimal (1.5% is not "2%")."""
    return f"{w:.0f}%" if abs(w - round(w)) < 0.05 else f"{w:.1f}%"


def _bars(ax, rows: list[tuple[str, dict[str, float]]]) -> None:  # type: ignore[no-untyped-def]
    height = 0.5
    for row, (_name, pct) in enumerate(rows):
        y = _ROW * row
        left = 0.0
        outside = 0
        for cat in FIGURE6_SPLIT:
            w = pct.get(cat, 0.0)
            ax.barh(y, w, left=left, height=height, color=COLOURS[cat], edgecolor="white", lw=0.5)
            if w > 0:
                label = _label(w)
                x = left + w / 2
                if w >= _INSIDE_MIN:
                    ax.text(x, y, label, ha="center", va="center", color=_TEXT_ON[cat], fontsize=8)
                else:
                    # small segments: above, below, above (higher), below (lower), ...
                    side = -1.0 if outside % 2 == 0 else 1.0
                    dy = side * (height / 2 + 0.3 + 0.32 * (outside // 2))
                    ax.annotate(
                        label,
                        xy=(x, y + side * height / 2),
                        xytext=(x, y + dy),
                        ha="center",
                        va="center",
                        fontsize=8,
                        arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "#444"},
                    )
                    outside += 1
            left += w
    ax.set_yticks([_ROW * i for i in range(len(rows))], [name for name, _ in rows], fontsize=9)
    ax.set_ylim(_ROW * (len(rows) - 1) + 1.0, -1.0)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of paired readings (original and protected image of one case)")


def _intervals(ax, report: TallyReport) -> None:  # type: ignore[no-untyped-def]
    groups = [*report.per_reader, report.pooled]
    n_g = len(groups)
    step = 0.8 / max(n_g, 1)
    markers = ["o", "s", "^", "v", "P", "X", "D", "<", ">", "h"]
    for gi, g in enumerate(groups):
        ys, xs, lo, hi = [], [], [], []
        for ci, cat in enumerate(FIGURE6_SPLIT):
            pct = g.figure6.percent.get(cat)
            band = g.figure6.ci_percent.get(cat)
            if pct is None or band is None:
                continue
            ys.append(ci - 0.4 + step * (gi + 0.5))
            xs.append(pct)
            lo.append(max(pct - band[0], 0.0))
            hi.append(max(band[1] - pct, 0.0))
        pooled = g is report.pooled
        ax.errorbar(
            xs,
            ys,
            xerr=[lo, hi],
            fmt="o" if pooled else markers[gi % len(markers)],
            color="black" if pooled else f"C{gi}",
            ms=5 if pooled else 4,
            lw=1.6 if pooled else 0.9,
            capsize=2,
            label=f"{g.label} (n={g.n_pairs})",
        )
    ax.scatter(
        [PAPER_FIGURE6[c] for c in FIGURE6_SPLIT],
        range(len(FIGURE6_SPLIT)),
        marker="D",
        s=40,
        facecolors="none",
        edgecolors="#7b1fa2",
        lw=1.4,
        zorder=5,
        label="paper Figure 6",
    )
    ax.set_yticks(range(len(FIGURE6_SPLIT)), [LABELS[c] for c in FIGURE6_SPLIT], fontsize=9)
    ax.set_ylim(len(FIGURE6_SPLIT) - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.grid(axis="x", color="#ddd", lw=0.5)
    level = 100 * (1 - report.alpha)
    ax.set_xlabel(f"% of paired readings, with {level:g}% Wilson score CI")
    ax.legend(fontsize=7, loc="lower right", frameon=True)


def figure6_figure(report: TallyReport) -> Figure:
    """The chart as a matplotlib Figure (axes 0: stacked bars, axes 1: Wilson CIs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows: list[tuple[str, dict[str, float]]] = [
        (f"{g.label} (n={g.n_pairs})", {c: g.figure6.percent.get(c) or 0.0 for c in FIGURE6_SPLIT})
        for g in [*report.per_reader, report.pooled]
    ]
    rows.append((_PAPER, {c: PAPER_FIGURE6[c] for c in FIGURE6_SPLIT}))
    height = max(4.6, 1.9 + 0.95 * len(rows))
    fig = Figure(figsize=(14, height))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1.0]})
    _bars(left, rows)
    _intervals(right, report)
    handles = [Patch(color=COLOURS[c], label=LABELS[c]) for c in FIGURE6_SPLIT]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(FIGURE6_SPLIT),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        f"Reader study {report.study}: diagnoses on original vs protected images "
        "(the paper's 23% both wrong are same-diagnosis: it reports 95% same diagnoses)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return fig


def draw_figure6(report: TallyReport, path: Path) -> None:
    """Write the chart as PNG (deterministic: no software or date metadata)."""
    figure6_figure(report).savefig(path, format="png", dpi=110, metadata={"Software": None})
