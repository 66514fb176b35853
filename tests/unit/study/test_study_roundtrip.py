"""Create -> fill sheets with known answers -> ingest -> tally, checked against hand counts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from medcrypt.study import (
    ingest_sheets,
    load_key,
    read_answers,
    tally,
    write_report,
)


def _plan_answers(
    classes: tuple[str, ...], readers: tuple[str, ...], truth: dict[str, str], seed: int
) -> dict[tuple[str, str], tuple[str, str]]:
    """(reader, case) -> (diagnosis on original, diagnosis on protected), seeded."""
    rng = np.random.default_rng(seed)
    planned = {}
    for reader in readers:
        for case, t in sorted(truth.items()):
            dx_o = t if rng.random() < 0.7 else classes[int(rng.integers(len(classes)))]
            dx_p = dx_o if rng.random() < 0.8 else classes[int(rng.integers(len(classes)))]
            planned[(reader, case)] = (dx_o, dx_p)
    return planned


def _fill_all(made, key, planned, helpers) -> list[Path]:  # type: ignore[no-untyped-def]
    sheets = []
    for a in key.assignments:
        answers = {}
        for iid in a.image_ids:
            entry = key.images[iid]
            dx_o, dx_p = planned[(a.reader, entry.case_id)]
            answers[iid] = dx_o if entry.version == "original" else dx_p
        sheets.append(helpers.fill_sheet(made.sheet(a.reader, a.session), answers))
    return sheets


def _expected(planned, truth, readers):  # type: ignore[no-untyped-def]
    """Counts by plain loops, independent of the library code."""
    out = {}
    for label in [*readers, "pooled"]:
        rows = [
            (dx_o, dx_p, truth[case])
            for (reader, case), (dx_o, dx_p) in planned.items()
            if label in ("pooled", reader)
        ]
        c = {
            "both_correct": 0,
            "both_wrong": 0,
            "right_only_original": 0,
            "right_only_protected": 0,
            "same": 0,
            "acc_o": 0,
            "acc_p": 0,
            "wrong_same": 0,
        }
        for o, p, t in rows:
            if o == t and p == t:
                c["both_correct"] += 1
            elif o == t:
                c["right_only_original"] += 1
            elif p == t:
                c["right_only_protected"] += 1
            else:
                c["both_wrong"] += 1
                c["wrong_same"] += o == p
            c["same"] += o == p
            c["acc_o"] += o == t
            c["acc_p"] += p == t
        c["n"] = len(rows)
        out[label] = c
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("design", ["counterbalanced", "paper"])
def test_round_trip_tally_equals_independent_counts(
    design, make_study, phantoms, helpers, tmp_path
):  # type: ignore[no-untyped-def]
    made, cfg = make_study(design=design)
    key = load_key(made.key_path)
    planned = _plan_answers(cfg.classes, cfg.readers, phantoms.truth, seed=3)
    sheets = _fill_all(made, key, planned, helpers)
    answers_path = made.study_dir / "answers.jsonl"

    after = dt.datetime.combine(key.session_dates[2], dt.time(9), tzinfo=dt.UTC)
    result = ingest_sheets(key, sheets, answers_path, now=after)
    assert sum(result.stored.values()) == 2 * len(phantoms.truth) * len(cfg.readers)
    answers = read_answers(answers_path)
    report = tally(key, answers)
    expected = _expected(planned, phantoms.truth, cfg.readers)

    for summary in [*report.per_reader, report.pooled]:
        e = expected[summary.label]
        f = summary.figure6
        assert summary.n_pairs == e["n"]
        assert f.both_correct == e["both_correct"]
        assert f.both_wrong == e["both_wrong"]
        assert f.right_only_original == e["right_only_original"]
        assert f.right_only_protected == e["right_only_protected"]
        assert f.both_wrong_same_diagnosis == e["wrong_same"]
        for cat in ("both_correct", "both_wrong", "right_only_original", "right_only_protected"):
            assert f.percent[cat] == pytest.approx(100.0 * e[cat] / e["n"])
        assert summary.mcnemar_b == e["right_only_original"]
        assert summary.mcnemar_c == e["right_only_protected"]
        assert summary.same_diagnosis.value == pytest.approx(e["same"] / e["n"])
        assert summary.accuracy_original.value == pytest.approx(e["acc_o"] / e["n"])
        assert summary.accuracy_protected.value == pytest.approx(e["acc_p"] / e["n"])
        assert summary.accuracy_difference.value == pytest.approx(
            (e["acc_p"] - e["acc_o"]) / e["n"]
        )
        assert sum(map(sum, summary.confusion)) == e["n"]
        # One statistic cross-checked by an independent computation: exact McNemar is a
        # two-sided binomial test of b against b + c with p = 1/2.
        b, c = e["right_only_original"], e["right_only_protected"]
        p = binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
        assert summary.mcnemar.p_value == pytest.approx(min(1.0, p))
        low, high = summary.same_diagnosis.ci_low, summary.same_diagnosis.ci_high
        assert low is not None and high is not None
        assert low <= summary.same_diagnosis.value <= high
    assert report.across_readers.fleiss_kappa["all"].value is not None
    assert report.across_readers.krippendorff_alpha["all"].value is not None

    paths = write_report(report, key, answers, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["pooled"]["figure6"]["both_correct"] == expected["pooled"]["both_correct"]
    assert "NaN" not in paths["json"].read_text()
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## pooled" in paths["markdown"].read_text()
    # iMRMC: one truth row per case and one row per stored answer, after "BEGIN DATA:".
    text = paths["imrmc/meningioma.imrmc"].read_text()
    data_rows = text.split("BEGIN DATA:\n", 1)[1].strip().splitlines()
    n_cases = len(phantoms.truth)
    assert len(data_rows) == n_cases + len(answers)
    truth_rows = [r for r in data_rows if r.startswith("-1,")]
    assert sum(int(r.split(",")[3]) for r in truth_rows) == sum(
        t == "meningioma" for t in phantoms.truth.values()
    )
    assert f"NR: {len(cfg.readers)}" in text
    assert "NM: 2" in text
