"""Tally on hand-made answer logs: degenerate tables and library cross-checks."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from medcrypt.study import AnswerRecord, Stat, load_key, tally, write_report

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def _answers(key, choose):  # type: ignore[no-untyped-def]
    """One AnswerRecord per (reader, image) with diagnosis ``choose(reader, entry)``."""
    out = []
    for a in key.assignments:
        for iid in a.image_ids:
            out.append(
                AnswerRecord(
                    reader=a.reader,
                    session=a.session,
                    image_id=iid,
                    diagnosis=choose(a.reader, key.images[iid]),
                    sheet="synthetic.csv",
                    sheet_line=1,
                    sheet_sha256="0" * 64,
                    ingested_at=NOW,
                )
            )
    return out


def _all_stats(report) -> list[tuple[str, Stat]]:  # type: ignore[no-untyped-def]
    stats = []
    for g in [*report.per_reader, report.pooled]:
        for name in type(g).model_fields:
            value = getattr(g, name)
            if isinstance(value, Stat):
                stats.append((f"{g.label}.{name}", value))
    a = report.across_readers
    stats += [(f"fleiss.{k}", v) for k, v in a.fleiss_kappa.items()]
    stats += [(f"alpha.{k}", v) for k, v in a.krippendorff_alpha.items()]
    return stats


def _no_nan(report) -> None:  # type: ignore[no-untyped-def]
    for name, s in _all_stats(report):
        for field in ("value", "ci_low", "ci_high", "statistic", "p_value"):
            v = getattr(s, field)
            assert v is None or math.isfinite(v), f"{name}.{field} = {v}"
        assert (s.value is None) <= (s.not_defined is not None), name
    json.dumps(report.model_dump(mode="json"), allow_nan=False)


def test_all_answers_identical_gives_explicit_not_defined(make_study, tmp_path):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    key = load_key(made.key_path)
    report = tally(key, _answers(key, lambda r, e: "meningioma"))
    _no_nan(report)
    pooled = report.pooled
    assert pooled.same_diagnosis.value == 1.0
    assert pooled.cohen_kappa.value is None
    assert pooled.cohen_kappa.not_defined.startswith("not defined because every case received")
    # zero discordant pairs: defined (issue 12 item 2). McNemar p = 1 (statsmodels), and the
    # Tango interval at n = 30 is +-z^2 / (n + z^2) = +-0.1135 (hand computation in
    # test_study_stats.py), which does not reach inside the 0.1 margin: not non-inferior.
    assert pooled.mcnemar.p_value == 1.0 and pooled.mcnemar.not_defined is None
    assert pooled.bowker.not_defined == "not defined because fewer than two diagnoses were used"
    assert pooled.stuart_maxwell.value is None
    assert pooled.accuracy_difference.ci_low == pytest.approx(-0.11351, abs=1e-5)
    assert pooled.non_inferior is False
    assert pooled.accuracy_difference.value == 0.0
    for subset in ("original", "protected", "all"):
        assert report.across_readers.fleiss_kappa[subset].not_defined.startswith(
            "not defined because every reader gave the same diagnosis"
        )
        assert (
            "only one diagnosis occurs"
            in report.across_readers.krippendorff_alpha[subset].not_defined
        )
    paths = write_report(report, key, [], tmp_path / "r")
    assert "not defined because" in paths["markdown"].read_text()


def test_perfect_agreement_with_varied_diagnoses(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    key = load_key(made.key_path)
    report = tally(key, _answers(key, lambda r, e: e.truth))
    _no_nan(report)
    p = report.pooled
    assert p.figure6.both_correct == p.n_pairs == 30
    assert p.cohen_kappa.value == pytest.approx(1.0)
    assert p.bowker.not_defined == (
        "not defined because no case got different diagnoses on the two versions"
    )
    assert p.stuart_maxwell.value is None
    assert report.across_readers.fleiss_kappa["all"].value == pytest.approx(1.0)
    assert report.across_readers.krippendorff_alpha["all"].value == pytest.approx(1.0)


def test_statistics_match_the_libraries_on_a_mixed_table(make_study):  # type: ignore[no-untyped-def]
    made, cfg = make_study()
    key = load_key(made.key_path)
    rng = np.random.default_rng(0)
    choice: dict[tuple[str, str, str], str] = {}
    for reader in cfg.readers:
        for _iid, e in sorted(key.images.items()):
            ok = rng.random() < (0.8 if e.version == "original" else 0.6)
            choice[(reader, e.case_id, e.version)] = (
                e.truth if ok else cfg.classes[int(rng.integers(len(cfg.classes)))]
            )
    report = tally(key, _answers(key, lambda r, e: choice[(r, e.case_id, e.version)]))
    _no_nan(report)
    cases = sorted(key.cases())
    orig = [choice[(r, c, "original")] for r in cfg.readers for c in cases]
    prot = [choice[(r, c, "protected")] for r in cfg.readers for c in cases]
    assert report.pooled.cohen_kappa.value == pytest.approx(
        cohen_kappa_score(orig, prot, labels=list(cfg.classes))
    )
    k = report.pooled.cohen_kappa
    assert k.ci_low < k.value < k.ci_high
    assert report.pooled.non_inferiority.p_value is not None
    for g in [*report.per_reader, report.pooled]:
        diff = g.accuracy_difference
        if g.non_inferior is not None and diff.ci_low is not None:
            # the decision agrees with the CI rule (lower bound above -margin)
            assert g.non_inferior == (diff.ci_low > -cfg.non_inferiority_margin)
    assert report.pooled.bowker.df is not None
    # Markdown and JSON render everything
    text = json.dumps(report.model_dump(mode="json"), allow_nan=False)
    assert "stuart_maxwell" in text


def test_partial_answers_are_noted_and_single_reader_agreement_not_defined(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study(readers=("solo",))
    key = load_key(made.key_path)
    first_session = [a for a in _answers(key, lambda r, e: e.truth) if a.session == 1]
    report = tally(key, first_session)
    _no_nan(report)
    assert report.pooled.n_pairs == 0
    assert any("answered on one version only" in n for n in report.notes)
    assert report.pooled.same_diagnosis.not_defined.startswith("not defined because there are no")
    assert report.across_readers.fleiss_kappa["all"].not_defined == (
        "not defined because it needs at least two readers"
    )
    assert report.across_readers.krippendorff_alpha["all"].not_defined == (
        "not defined because it needs at least two readers"
    )


@pytest.mark.parametrize(("margin", "expected"), [(0.25, True), (0.2, False), (0.01, False)])
def test_non_inferiority_decision_follows_the_margin(make_study, margin, expected):  # type: ignore[no-untyped-def]
    made, _ = make_study(non_inferiority_margin=margin)
    key = load_key(made.key_path)
    victims = {"case000"}  # alice and bob err on this protected image

    def choose(reader: str, e) -> str:  # type: ignore[no-untyped-def]
        if reader != "carol" and e.version == "protected" and e.case_id in victims:
            return "chordoma" if e.truth != "chordoma" else "meningioma"
        return e.truth

    pooled = tally(key, _answers(key, choose)).pooled
    assert pooled.accuracy_difference.value == pytest.approx(-2 / 30)
    assert pooled.non_inferior is expected
    assert (pooled.accuracy_difference.ci_low > -margin) is expected
    # b = 2, c = 0 of 30: Tango [-0.213, 0.054]; the Wald interval [-0.157, 0.024] would
    # have called margin 0.2 non-inferior
    assert pooled.accuracy_difference.ci_low == pytest.approx(-0.21323, abs=1e-4)
    assert pooled.accuracy_difference_wald.ci_low == pytest.approx(-0.15745, abs=1e-4)


def test_imrmc_export_skips_classes_without_cases(make_study, tmp_path):  # type: ignore[no-untyped-def]
    from medcrypt.medical import CLASS_NAMES

    made, _ = make_study(classes=(*CLASS_NAMES, "glioma"))
    key = load_key(made.key_path)
    answers = _answers(key, lambda r, e: e.truth)
    paths = write_report(tally(key, answers), key, answers, tmp_path / "r")
    assert "imrmc/glioma.imrmc" not in paths
    assert "glioma (N1 = 0 of 10 cases)" in paths["imrmc/README.txt"].read_text()
    text = paths["imrmc/schwannoma.imrmc"].read_text()
    header, body = text.split("BEGIN DATA:\n")
    assert "N0: 8\nN1: 2\nNR: 3\nNM: 2" in header
    rows = [r.split(",") for r in body.strip().splitlines()]
    # perfect readers: each reader row's score equals its case's truth row
    truth = {r[1]: r[3] for r in rows if r[0] == "-1"}
    assert all(r[3] == truth[r[1]] for r in rows if r[0] != "-1")
    assert len(rows) == 10 + 60
    md = paths["markdown"].read_text()
    assert "| original \\ protected |" in md
