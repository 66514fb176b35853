"""The report a coordinator hands on (issue 12 items 3-6 and 8), on a 100-case study.

Reader ``dr_a`` reproduces the paper's Figure 6 exactly on 100 cases: 72 both correct,
23 both wrong (20 with the same wrong diagnosis, 3 with different ones), 2 right only on the
original, 3 right only on the protected image. Reader ``dr_b`` is right on every original and
wrong on the protected image of 30 cases, so McNemar's p is 2 * 0.5**30 = 1.9e-9.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.errors import StudyError
from medcrypt.study import (
    AnswerRecord,
    StudyCase,
    StudyConfig,
    create_study,
    format_p,
    load_key,
    read_answers,
    tally,
    write_report,
)
from medcrypt.study._chart import figure6_figure

pytestmark = pytest.mark.timeout(60)

CLASSES = ("meningioma", "chordoma", "schwannoma")
AFTER = dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC)


def _study(root: Path, name: str = "pilot-run1", n: int = 100, truth=None):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        img = rng.uniform(0, 1, (6, 6)).astype(np.float32)
        label = truth(i) if truth else CLASSES[i % 3]
        cases.append(StudyCase(f"c{i:03d}", label, img, img.copy()))
    cfg = StudyConfig(
        name=name, classes=CLASSES, readers=("dr_a", "dr_b"), design="paper", seed=5,
        start_date=dt.date(2027, 1, 4), washout_days=28, non_inferiority_margin=0.05,
    )  # fmt: skip
    made = create_study(cfg, cases, root / "study")
    return made, load_key(made.key_path)


def _wrong(truth: str, other: bool = False) -> str:
    rest = [c for c in CLASSES if c != truth]
    return rest[1] if other else rest[0]


def _plan(key) -> dict[tuple[str, str, str], str]:  # type: ignore[no-untyped-def]
    """(reader, case, version) -> diagnosis."""
    out = {}
    for i, (case, t) in enumerate(key.cases().items()):
        if i < 72:
            o, p = t, t
        elif i < 92:
            o = p = _wrong(t)
        elif i < 95:
            o, p = _wrong(t), _wrong(t, other=True)
        elif i < 97:
            o, p = t, _wrong(t)
        else:
            o, p = _wrong(t), t
        out[("dr_a", case, "original")], out[("dr_a", case, "protected")] = o, p
        out[("dr_b", case, "original")] = t
        out[("dr_b", case, "protected")] = _wrong(t) if i < 30 else t
    return out


def _records(key, plan, when=AFTER, skip=()):  # type: ignore[no-untyped-def]
    recs = []
    for a in key.assignments:
        if (a.reader, a.session) in skip:
            continue
        for line, iid in enumerate(a.image_ids, start=10):
            e = key.images[iid]
            recs.append(
                AnswerRecord(
                    reader=a.reader, session=a.session, image_id=iid,
                    diagnosis=plan[(a.reader, e.case_id, e.version)],
                    sheet=f"answers_{a.reader}_session-{a.session}.csv", sheet_line=line,
                    sheet_sha256=f"{a.session}" * 64, ingested_at=when,
                    not_before=key.session_dates[a.session],
                )
            )  # fmt: skip
    return recs


@pytest.fixture(scope="module")
def study(tmp_path_factory):  # type: ignore[no-untyped-def]
    made, key = _study(tmp_path_factory.mktemp("report"))
    answers = _records(key, _plan(key))
    return made, key, answers, tally(key, answers)


def test_figure6_counts_and_wilson_cis(study) -> None:  # type: ignore[no-untyped-def]
    _made, _key, _answers, report = study
    a = report.per_reader[0].figure6
    assert (a.both_correct, a.both_wrong, a.right_only_original, a.right_only_protected) == (
        72, 23, 2, 3,
    )  # fmt: skip
    assert (a.both_wrong_same_diagnosis, a.both_wrong_different_diagnosis) == (20, 3)
    # Wilson 95% CI of 2/100 by hand: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, p, n = 1.959964, 0.02, 100
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = a.ci_percent["right_only_original"]
    assert low == pytest.approx(100 * (centre - half) / (1 + z * z / n), abs=1e-4)
    assert high == pytest.approx(100 * (centre + half) / (1 + z * z / n), abs=1e-4)


def test_chart_labels_every_segment_and_shows_cis(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, _key, _answers, report = study
    fig = figure6_figure(report)
    bars, cis = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in bars.texts]
    # dr_a: 72, 20, 3, 2, 3 and the paper row: 72, 23, 2, 3 (its different-diagnosis share is 0)
    for text in ("72%", "20%", "2%", "3%", "23%"):
        assert text in labels, (text, labels)
    assert labels.count("3%") >= 3  # dr_a both-wrong-different, dr_a right-only-protected, paper
    assert labels.count("2%") >= 2  # dr_a right-only-original and the paper's
    n_segments = (
        sum(
            1
            for g in [*report.per_reader, report.pooled]
            for c, v in g.figure6.percent.items()
            if c not in ("both_wrong",) and v
        )
        + 4
    )  # the paper row has 4 non-empty segments
    assert len(labels) == n_segments
    tick_labels = [t.get_text() for t in bars.get_yticklabels()]
    assert "paper Figure 6 (3 doctors)" in tick_labels
    assert len(cis.containers) == len(report.per_reader) + 1  # an errorbar set per group
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "both wrong, same diagnosis" in legend and "both wrong, different diagnoses" in legend
    paths = write_report(report, _key, _answers, tmp_path / "r")
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_small_p_values_are_never_zero(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, key, answers, report = study
    b = report.per_reader[1]
    assert b.mcnemar.p_value == pytest.approx(2 * 0.5**30)
    assert format_p(b.mcnemar.p_value) == "< 0.001"
    assert format_p(0.0012) == "0.001" and format_p(None) == "—"
    paths = write_report(report, key, answers, tmp_path / "r")
    for kind, less in (("markdown", "<"), ("html", "&lt;")):
        text = paths[kind].read_text()
        assert f"p {less} 0.001" in text
        assert not re.search(r"p = 0\.000\b", text)
        assert "(stat 0)" in text  # exact McNemar's statistic min(b, c) = 0, not "0.000"


def test_per_reader_confusion_and_paper_beside_ours(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, key, answers, report = study
    paths = write_report(report, key, answers, tmp_path / "r")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    for reader in ("dr_a", "dr_b", "pooled"):
        title = f"{reader}: diagnoses on original (rows) vs protected (columns)"
        assert f"### {title}" in md and f"<h3>{title}</h3>" in page
    assert "| category | paper Figure 6 | dr_a (n=100) | dr_b (n=100) | pooled (n=200) |" in md
    assert "| right only on original | 2% | 2.0% [0.6, 7.0] |" in md
    assert "| both wrong, different diagnoses | 0% | 3.0% [1.0, 8.5] |" in md
    assert "<th>paper Figure 6</th>" in page
    # dr_a's confusion rows sum to 100 and the diagonal holds the 72 + 20 same diagnoses
    conf = np.array(report.per_reader[0].confusion)
    assert conf.sum() == 100 and np.trace(conf) == 92


def test_unblinded_exports_are_owner_only(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, key, answers, report = study
    out = tmp_path / "r"
    (out / "imrmc").mkdir(parents=True)
    stale = out / "imrmc" / "ids.csv"
    stale.write_text("old")
    stale.chmod(0o644)
    paths = write_report(report, key, answers, out)
    assert stat.S_IMODE((out / "imrmc").stat().st_mode) == 0o700
    unblinded = [p for name, p in paths.items() if name.startswith("imrmc/")]
    assert {p.name for p in unblinded} >= {"ids.csv", "README.txt", "meningioma.imrmc"}
    for p in unblinded:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stale.read_text().startswith("kind,number,name")
    # the shareable report names no case
    for kind in ("json", "markdown", "html"):
        assert "c000" not in paths[kind].read_text()


def _imrmc_header(text: str) -> dict[str, int]:
    """iMRMC's header reading (InputFile.getExperimentSizeFromHeader): every line before the
    one starting with BEGIN DATA:, upper-cased; a line containing N0:/N1:/NR:/NM: anywhere is
    that field, an integer from its 4th character on (Integer.valueOf(substring(3).trim()))."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        upper = line.upper()
        if upper.startswith("BEGIN DATA:"):
            return fields
        for field in ("N0:", "N1:", "NR:", "NM:"):
            if field in upper:
                fields[field] = int(upper[3:].strip())  # ValueError: iMRMC fails here too
    raise AssertionError("no BEGIN DATA: line")


def test_imrmc_header_survives_a_study_name_like_a_field(study) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.study import imrmc_files

    _made, key, answers, _report = study
    assert key.config.name == "pilot-run1"
    files = imrmc_files(key, answers)
    for name, text in files.items():
        if name.endswith(".imrmc"):
            men = name == "meningioma.imrmc"  # 34 of the 100 cases, the others 33
            assert _imrmc_header(text) == {"N0:": 66 if men else 67, "N1:": 34 if men else 33,
                                           "NR:": 2, "NM:": 2}  # fmt: skip
            assert "pilot-run1" in text.split("\n", 1)[0]


def test_classes_imrmc_will_drop_are_warned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, key = _study(
        tmp_path, n=12, truth=lambda i: "chordoma" if i < 2 else CLASSES[2 if i < 5 else 0]
    )
    plan = {
        (r, c, v): t for r in ("dr_a", "dr_b") for c, t in key.cases().items()
        for v in ("original", "protected")
    }  # fmt: skip
    answers = _records(key, plan)
    report = tally(key, answers)
    [note] = [n for n in report.notes if "iMRMC" in n]
    assert note.startswith("iMRMC will drop class 'chordoma': it has 2 case(s) with and 10 ")
    paths = write_report(report, key, answers, tmp_path / "r")
    assert "Warning: files that iMRMC will not analyse" in paths["imrmc/README.txt"].read_text()
    assert "iMRMC will drop class 'chordoma'" in paths["markdown"].read_text()
    # schwannoma (3 of 12) and meningioma (7 of 12) have more than 2 of each kind: no warning


def test_agreement_says_which_images_it_used(study) -> None:  # type: ignore[no-untyped-def]
    _made, key, _answers, _report = study
    partial = _records(key, _plan(key), skip={("dr_b", 2)})
    report = tally(key, partial)
    fleiss = report.across_readers.fleiss_kappa["all"]
    assert fleiss.note is not None
    assert fleiss.note.startswith("computed on 100 of 200 images (those every reader answered)")
    assert "not yet answered by: dr_b (100)" in fleiss.note
    alpha = report.across_readers.krippendorff_alpha["protected"]
    assert alpha.note is not None and alpha.note.startswith("computed on 0 of 100 images")
    # with everyone's answers in, no such note
    full = tally(key, _records(key, _plan(key)))
    assert full.across_readers.fleiss_kappa["all"].note is None


def test_report_lists_early_and_late_sessions(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _made, key, _answers, _report = study
    plan = _plan(key)
    early = dt.datetime(2027, 1, 20, tzinfo=dt.UTC)  # session 2 opens 2027-02-01
    recs = [r for r in _records(key, plan) if not (r.reader == "dr_a" and r.session == 2)]
    recs += [
        r.model_copy(update={"ingested_at": early, "allowed_early": True})
        for r in _records(key, plan)
        if r.reader == "dr_a" and r.session == 2
    ]
    report = tally(key, recs)
    rows = {(t.reader, t.session): t for t in report.sessions}
    assert rows[("dr_a", 2)].status == "early" and rows[("dr_a", 2)].days_early == 12
    assert "(accepted with --allow-early)" in rows[("dr_a", 2)].detail
    # dr_b's session 1 came in on 2027-06-01, 148 days after it opened: late
    assert rows[("dr_b", 1)].status == "late"
    assert rows[("dr_b", 1)].detail.startswith("ingested 148 day(s) after its not-before date")
    md = write_report(report, key, recs, tmp_path / "r")["markdown"].read_text()
    assert "## Sessions: not-before dates and ingest dates" in md
    assert "| dr_a | 2 | 2027-02-01 | 2027-01-20 | early: ingested 12 day(s) before" in md


def test_hand_edited_log_is_validated_with_line_numbers(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    made, key, answers, _report = study
    log = tmp_path / "answers.jsonl"
    lines = [a.model_dump_json() for a in answers[:6]]
    edited = json.loads(lines[1])
    edited["diagnosis"] = "glioma"
    lines[1] = json.dumps(edited)
    missing = json.loads(lines[2])
    del missing["image_id"]
    lines[2] = json.dumps(missing)
    lines[3] = lines[3][:-5]  # truncated by an editor
    lines.append(lines[0])  # a pasted duplicate
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(StudyError) as info:
        read_answers(log, key=key)
    msg = str(info.value)
    assert "line 3: image_id: Field required" in msg
    assert "line 4: not JSON" in msg
    # schema problems are listed first; with them fixed, the key checks run
    lines[2], lines[3] = answers[2].model_dump_json(), answers[3].model_dump_json()
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(StudyError) as info:
        read_answers(log, key=key)
    msg = str(info.value)
    assert "line 2: diagnosis 'glioma' is not one of the study's classes" in msg
    assert "line 7: reader 'dr_a' answered image" in msg and "already on line 1" in msg
    # through the CLI: a message naming the log and its lines, no traceback
    (made.study_dir / "answers.jsonl").write_text(log.read_text())
    res = CliRunner().invoke(main, ["study", "tally", str(made.study_dir)])
    assert res.exit_code != 0 and res.exception is not None
    assert "Traceback" not in res.output
    assert "line 2: diagnosis 'glioma'" in res.output and "answers.jsonl" in res.output
    (made.study_dir / "answers.jsonl").unlink()
