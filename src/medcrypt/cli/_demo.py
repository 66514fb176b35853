"""CLI command ``medcrypt demo``: the whole story on phantoms, ending at one page to open.

Steps: phantom archive (with one broken case), key and its surrogate (mode unlearnable), the
archive job on local Ray, a small protection evaluation, reader-study packets for three
readers, then the pages: the run
report, the protection page and ``DIR/report.html`` linking them and the packets.
"""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path
from typing import Any

import click

from medcrypt.cli._progress import progress_bar

__all__ = ["register"]

_STEPS = 8
_READERS = ("reader_a", "reader_b", "reader_c")


class _Steps:
    """Prints ``[k/N] what  (+elapsed)`` as each step starts."""

    def __init__(self) -> None:
        self.k = 0
        self.t0 = time.perf_counter()

    def __call__(self, what: str) -> None:
        self.k += 1
        click.echo(f"[{self.k}/{_STEPS}] {what}  (+{time.perf_counter() - self.t0:.0f} s)")


def _study(root: Path, labels: Path, dest: Path, seed: int) -> tuple[list[Path], bool]:
    """Packets for three readers (created once; a rerun reuses them)."""
    from medcrypt.medical import CLASS_NAMES
    from medcrypt.study import StudyConfig, cases_from_archive, create_study

    study_dir = root / "study"
    reused = study_dir.exists()
    if not reused:
        cfg = StudyConfig(
            name="demo-reader-study",
            classes=CLASS_NAMES,
            readers=_READERS,
            design="counterbalanced",
            seed=seed + 2020,
        )
        cases = cases_from_archive(dest, cfg.classes, labels_csv=labels)
        create_study(cfg, cases, study_dir)
    return sorted((study_dir / "packets").glob("*/session-*/packet.html")), reused


def _index(
    root: Path, result: object, run_page: Path, prot_page: Path, packets: list[Path]
) -> Path:
    from medcrypt.cluster._demo import DemoResult
    from medcrypt.report import IndexLink, IndexSection, write_index

    assert isinstance(result, DemoResult)
    s = result.summary
    e = html.escape
    broken = ", ".join(result.broken_cases)
    story = (
        f"<p>A phantom archive of {s.total} cases (NIfTI and DICOM; <code>{e(broken)}</code> "
        f"broken on purpose) went through the real archive job: <b>{s.done}</b> protected, "
        f"{s.skipped} skipped, <b>{s.quarantined}</b> quarantined, in {s.wall_s:.0f} s. Mean "
        f"PSNR {result.mean_psnr:.1f} dB, mean SSIM {result.mean_ssim:.4f}; the key's "
        f"surrogate's accuracy on clean phantoms {result.base_accuracy:.0%}.</p>"
    )
    sections = [
        IndexSection(
            "What the demo did",
            story,
            (
                IndexLink(
                    run_page,
                    "Run report",
                    "summary, quarantined cases with reasons, histograms, image gallery",
                ),
                IndexLink(
                    prot_page,
                    "Protection page",
                    "Table 12 figures, per-epoch curves, frontier over budgets",
                ),
            ),
        ),
        IndexSection(
            "Reader-study packets",
            f"<p>{len(_READERS)} readers, two sessions each, counterbalanced: what a study "
            "coordinator hands out (<code>study/packets/</code>). The unblinding key stays in "
            "<code>study/unblinding/</code>.</p>",
            tuple(IndexLink(p, f"{p.parent.parent.name}, {p.parent.name}") for p in packets),
        ),
        IndexSection(
            "Where the files are",
            "<ul>"
            f"<li>archive: <code>{e(str(result.archive))}</code></li>"
            f"<li>protected dest: <code>{e(str(result.dest))}</code> (records, "
            "<code>_quarantine/</code>, <code>_runs/</code>)</li>"
            f"<li>secrets (keep private): <code>{e(str(result.key.parent))}</code></li>"
            '</ul><p class="note">The protection figures are toy-scale phantom measurements '
            "that show the protocol; see the README for measurements on real data.</p>",
        ),
    ]
    return write_index(root / "report.html", "medcrypt demo", f"run {s.run_id} · {root}", sections)


def _verdicts(reports: list[dict[str, Any]]) -> list[str]:
    """The page's notes: which mode the demo released, and each budget judged by its bar."""
    from medcrypt.processing.assessment import ProtectionReport

    judged = [ProtectionReport.model_validate(r) for r in reports]
    modes = sorted({r.pgd.mode for r in judged})
    notes = [
        f"Mode evaluated: {', '.join(modes)}, the mode the demo's archive job released "
        "(same key settings: budget, per-pixel cap, per-case steps)."
    ]
    notes += [f"eps {r.pgd.eps:g}: {r.verdict()[1]}" for r in judged]
    return notes


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the archive, the protected outputs, the pages and the demo's secrets.",
)
@click.option(
    "--cases",
    type=click.IntRange(2, 200),
    default=None,
    help="Intact phantom cases in the demo archive (default 12, with --small 6).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the phantom archive.")
@click.option(
    "--small",
    is_flag=True,
    help="About a minute on 2 CPU cores: fewer cases, a smaller protection evaluation.",
)
def demo_cmd(out: Path, cases: int | None, seed: int, small: bool) -> None:
    """The whole story on phantoms, locally on CPU; ends by printing the page to open."""
    from medcrypt.cluster._demo import run_demo
    from medcrypt.report import load_protection_reports, write_protection_page, write_run_report

    n = cases if cases is not None else (6 if small else 12)
    step = _Steps()
    with progress_bar("demo") as progress:
        result = run_demo(
            out,
            n_cases=n,
            n_dicom=max(1, n // 3),
            seed=seed,
            small=small,
            progress=progress,
            step=step,
        )
    root = result.dest.parent
    step("creating reader-study packets for three readers")
    packets, reused = _study(root, result.labels, result.dest, seed)
    if reused:
        click.echo(f"      (reused the study in {root / 'study'})")
    step("writing the run report")
    run_page, _run = write_run_report(
        str(result.dest), root / "pages" / "run.html", run_id=result.summary.run_id
    )
    step("writing the protection page")
    reports = load_protection_reports(result.protection)
    prot_page = write_protection_page(
        reports, root / "pages" / "protection.html", notes=_verdicts(reports)
    )
    step("writing the index")
    index = _index(root, result, run_page, prot_page, packets)
    s = result.summary
    click.echo(
        f"protected {s.done} of {s.total} phantom cases ({s.skipped} skipped, "
        f"{s.quarantined} quarantined, {', '.join(result.broken_cases)} on purpose) in "
        f"{s.wall_s:.0f}s; mean PSNR {result.mean_psnr:.1f} dB, SSIM {result.mean_ssim:.4f}; "
        f"demo {time.perf_counter() - step.t0:.0f} s"
    )
    click.echo(f"secrets: {result.key.parent} (keep private)")
    click.echo("open this page:")
    click.echo(str(index))
    # the deliberate broken case is expected; anything beyond it is a real problem
    if s.failed or s.error is not None:
        sys.exit(s.exit_code)
    if s.quarantined > len(result.broken_cases):
        click.echo(
            f"exit code 3: more cases quarantined than the demo's broken one "
            f"(see {result.dest}/_quarantine/)",
            err=True,
        )
        sys.exit(3)


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(demo_cmd)
