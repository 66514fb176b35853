"""CLI commands of medcrypt.study: ``medcrypt study create | ingest | tally | serve``.

Study folder conventions: the unblinding key defaults to ``STUDY/unblinding/key.json``,
answers go to ``STUDY/answers.jsonl`` and the tally to ``STUDY/report/``. Only
``STUDY/packets/`` is handed to readers. ``serve`` keeps web answers in
``STUDY/answers.sqlite`` and the readers' links in ``STUDY/unblinding/links.txt`` (0600);
``ingest`` and ``tally`` take every handed-in web session from there through the answer
sheets' validation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from medcrypt.cli._progress import progress_bar
from medcrypt.config import load_config
from medcrypt.errors import AnswerSheetError, ConfigError

if TYPE_CHECKING:
    from medcrypt.study import IngestResult

__all__ = ["register"]

_KEY_HELP = "Unblinding key file (default: STUDY/unblinding/key.json)."


def _key_path(study_dir: Path, key: Path | None) -> Path:
    return key if key is not None else study_dir / "unblinding" / "key.json"


def _csv_list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.group("study")
def study() -> None:
    """Reader study (paper Figures 5-6): blinded packets, answer sheets, tally."""


@study.command("create")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--archive",
    help="Archive job dest prefix, a folder or s3://bucket/prefix "
    "(<case>/encrypted.png, <case>/record.json, _originals/<case>/original.png).",
)
@click.option("--endpoint-url", help="S3-compatible endpoint for an s3:// --archive.")
@click.option(
    "--originals",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of original <case>.png slices (with --protected and --labels).",
)
@click.option(
    "--protected",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of protected <case>.png slices.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV case_id,label (required with two folders; overrides record.json labels).",
)
@click.option(
    "--key",
    "key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the unblinding key (default: OUT/unblinding/key.json); keep it "
    "away from the packets.",
)
@click.option("--classes", help="Comma-separated closed list of diagnoses (overrides config).")
@click.option("--readers", help="Comma-separated reader names (overrides config).")
@click.option("--design", type=click.Choice(["paper", "counterbalanced"]), help="Study design.")
@click.option("--seed", type=int, help="Seed of every reader's order (overrides config).")
@click.option("--washout-days", type=int, help="Days between sessions 1 and 2.")
@click.option(
    "--start-date", type=click.DateTime(formats=["%Y-%m-%d"]), help="First day of session 1."
)
@click.option(
    "--pdf/--no-pdf", "pdf", default=None, help="Also write packet.pdf (overrides config)."
)
@click.option(
    "--allow-revisions/--no-revisions",
    "allow_revisions",
    default=None,
    help="Whether readers may go back and change an answer before handing a session in "
    "(default: no, as the printed instructions say; overrides config allow_revisions). "
    "The packets' instructions, the web page and `study serve` all follow it.",
)
def create(
    config: Path,
    out: Path,
    archive: str | None,
    endpoint_url: str | None,
    originals: Path | None,
    protected: Path | None,
    labels: Path | None,
    key: Path | None,
    classes: str | None,
    readers: str | None,
    design: str | None,
    seed: int | None,
    washout_days: int | None,
    start_date: dt.datetime | None,
    pdf: bool | None,
    allow_revisions: bool | None,
) -> None:
    """Create packets and answer sheets in OUT from CONFIG (YAML StudyConfig)."""
    from medcrypt.study import StudyConfig, cases_from_archive, cases_from_folders, create_study

    overrides: dict[str, Any] = {
        "classes": _csv_list(classes),
        "readers": _csv_list(readers),
        "design": design,
        "seed": seed,
        "washout_days": washout_days,
        "start_date": start_date.date() if start_date else None,
        "pdf_packets": pdf,
        "allow_revisions": allow_revisions,
    }
    cfg = load_config(config, StudyConfig, overrides=overrides)
    if archive is not None and (originals or protected):
        raise ConfigError("give either --archive or --originals/--protected, not both")
    if archive is not None:
        cases = cases_from_archive(
            archive, cfg.classes, labels_csv=labels, endpoint_url=endpoint_url
        )
    elif originals is not None and protected is not None:
        if labels is None:
            raise ConfigError("--labels is required with --originals/--protected", field="labels")
        cases = cases_from_folders(originals, protected, labels, cfg.classes)
    else:
        raise ConfigError("give --archive PREFIX, or --originals DIR --protected DIR --labels CSV")
    with progress_bar("writing packets") as progress:
        made = create_study(cfg, cases, out, key_path=key, progress=progress)
    click.echo(f"study with {len(cases)} cases and {len(cfg.readers)} readers in {out}")
    click.echo(f"hand out only: {made.packets_dir}")
    click.echo(f"unblinding key (keep private, mode 0600): {made.key_path}")
    click.echo(f"session 2 not before: {made.session_dates[2].isoformat()}")
    click.echo(
        "readers may go back and change answers"
        if cfg.allow_revisions
        else "readers may not go back or change an answer (--allow-revisions to allow it)"
    )
    if made.blinding is not None:
        click.echo(made.blinding.summary(), err=made.blinding.separable)
        click.echo(f"blinding figures for the ethics file: {out / 'README.md'}")


@study.command("ingest")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument(
    "sheets", nargs=-1, required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), help=_KEY_HELP)
@click.option(
    "--allow-early",
    is_flag=True,
    help="Accept sheets that come in before their session's not-before date (the washout); "
    "recorded with every answer and listed in the report.",
)
def ingest(study_dir: Path, sheets: tuple[Path, ...], key: Path | None, allow_early: bool) -> None:
    """Validate filled answer SHEETS and append their answers to STUDY_DIR/answers.jsonl.

    Every problem in every sheet is listed; nothing is stored unless all sheets are valid.
    A sheet already ingested byte for byte is skipped. A sheet for a session whose
    not-before date has not come yet is refused unless --allow-early. Sessions handed in
    through `study serve` (STUDY_DIR/answers.sqlite) are ingested too, as the sheets they
    would have been, through the same checks; with no SHEETS, only those.
    """
    from medcrypt.study import ingest_sheets, load_key
    from medcrypt.study.web import ingest_web_answers

    unblinding = load_key(_key_path(study_dir, key))
    if not sheets and not (study_dir / "answers.sqlite").exists():
        raise ConfigError(
            "expected answer sheets to ingest, or web answers in answers.sqlite; got neither",
            field="sheets",
        )
    if sheets:
        try:
            result = ingest_sheets(
                unblinding, list(sheets), study_dir / "answers.jsonl", allow_early=allow_early
            )
        except AnswerSheetError as exc:
            click.echo(f"nothing was ingested: {len(exc.problems)} problem(s)", err=True)
            raise
        _echo_ingest(result)
    try:
        web = ingest_web_answers(unblinding, study_dir)
    except AnswerSheetError as exc:
        click.echo(
            f"no web answers were ingested: {len(exc.problems)} problem(s)"
            + (" (the sheets above were stored)" if sheets else ""),
            err=True,
        )
        raise
    _echo_ingest(web)


def _echo_ingest(result: IngestResult) -> None:
    for s in result.sheets:
        click.echo(
            f"stored {s.n_answers} answers for reader {s.reader!r} session {s.session} "
            f"from file {s.file}"
        )
        if s.name_mismatch:
            click.echo(f"warning: file {s.file}: {s.name_mismatch}", err=True)
        if s.early_days:
            how = (
                "opened early by the coordinator in the web app"
                if s.file.startswith("answers.sqlite:")
                else "accepted with --allow-early"
            )
            click.echo(
                f"warning: reader {s.reader!r} session {s.session} came in {s.early_days} "
                f"day(s) before its not-before date; {how} (recorded)",
                err=True,
            )
    for sheet in result.skipped:
        click.echo(f"skipped {sheet}: already ingested (same SHA-256)")


@study.command("tally")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), help=_KEY_HELP)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: STUDY_DIR/report).",
)
def tally_cmd(study_dir: Path, key: Path | None, out: Path | None) -> None:
    """Tally the ingested answers: Figure 6, agreement statistics, iMRMC export, report.

    Web sessions handed in through `study serve` are ingested first (as `study ingest` does).
    """
    from medcrypt.study import load_key, read_answers, tally, write_report
    from medcrypt.study.web import ingest_web_answers, reopening_notes

    unblinding = load_key(_key_path(study_dir, key))
    _echo_ingest(ingest_web_answers(unblinding, study_dir))
    answers = read_answers(study_dir / "answers.jsonl", key=unblinding)
    report = tally(unblinding, answers)
    report = report.model_copy(update={"notes": (*report.notes, *reopening_notes(study_dir))})
    paths = write_report(report, unblinding, answers, out or study_dir / "report")
    pooled = report.pooled
    same = pooled.same_diagnosis.value
    if same is not None:
        click.echo(f"{pooled.n_pairs} paired readings; same diagnosis {100 * same:.1f}%")
    else:
        click.echo("no paired readings yet (both sessions of a reader must be ingested)")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"report: {paths['markdown']}")


@study.command("serve")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port to listen on.",
)
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), help=_KEY_HELP)
@click.option(
    "--reissue-links",
    is_flag=True,
    help="Mint new links for every reader and the coordinator; the old ones stop working.",
)
@click.option(
    "--show-links",
    is_flag=True,
    help="Print the links again (they are printed only when issued; they are kept in "
    "STUDY_DIR/unblinding/links.txt).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME[:PORT]",
    help="Also answer requests for this host name (a reverse proxy's public name); "
    "repeatable. Any other Host header is refused (DNS rebinding).",
)
def serve(
    study_dir: Path,
    host: str,
    port: int,
    key: Path | None,
    reissue_links: bool,
    show_links: bool,
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the study to readers in their browsers, and its progress to the coordinator.

    Prints one link per reader and the coordinator's link when they are issued (first start,
    --reissue-links); later starts print only where they are kept, owner-only
    (STUDY_DIR/unblinding/links.txt), unless --show-links. Answers go to
    STUDY_DIR/answers.sqlite on every click. Only requests naming HOST:PORT (or an
    --allowed-host) are answered. Only 127.0.0.1 by default: for other machines put a TLS
    reverse proxy in front.
    """
    from medcrypt.study.web import is_loopback, prepare_server, run_server

    prepared = prepare_server(
        study_dir,
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        key_path=key,
        reissue_links=reissue_links,
    )
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    if prepared.issued:
        click.echo(f"new links issued (kept, owner-only, in {prepared.links_file}):")
    if prepared.issued or show_links:
        for line in prepared.links.lines(base):
            click.echo(line)
    else:
        n = len(prepared.links.readers)
        click.echo(
            f"links of {n} reader(s) and the coordinator are kept, owner-only, in "
            f"{prepared.links_file}; `--show-links` prints them"
        )
    click.echo(f"answers are saved in {prepared.db}; stop with Ctrl-C")
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}, not only this machine: links and answers travel "
            "unencrypted. Put a TLS reverse proxy in front (README: 'Serving the study'), "
            "name it with --allowed-host, and give readers its https:// address instead.",
            err=True,
        )
    run_server(prepared.app, host, port)


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(study)
