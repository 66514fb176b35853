"""``medcrypt study create | ingest | tally`` end to end through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.study import load_key, read_answers

pytestmark = pytest.mark.timeout(60)


def test_cli_create_ingest_tally(tmp_path: Path, phantoms, helpers) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "study.yaml"
    config.write_text(
        "name: cli-study\n"
        "classes: [meningioma, chordoma, schwannoma, pituitary_adenoma, craniopharyngioma]\n"
        "readers: [ann, ben]\nseed: 3\ndesign: counterbalanced\nwashout_days: 7\n"
        "start_date: 2027-03-01\nnon_inferiority_margin: 0.1\n"
    )
    out = tmp_path / "study"
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "-q", "study", "create", str(config), str(out),
            "--originals", str(phantoms.originals),
            "--protected", str(phantoms.protected),
            "--labels", str(phantoms.labels),
            "--readers", "ann,ben,cat",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "session 2 not before: 2027-03-08" in res.output
    key_path = out / "unblinding" / "key.json"
    key = load_key(key_path)
    assert key.config.readers == ("ann", "ben", "cat")
    assert not (out / "packets" / "cat" / "session-2" / "packet.pdf").exists()

    sheets = []
    for a in key.assignments:
        sheets.append(
            helpers.fill_sheet(
                out
                / "packets"
                / a.reader
                / f"session-{a.session}"
                / f"answers_{a.reader}_session-{a.session}.csv",
                {i: key.images[i].truth for i in a.image_ids},
            )
        )
    # a broken sheet: nothing is ingested and every problem is printed
    broken = tmp_path / "broken.csv"
    broken.write_text(sheets[0].read_text().replace(",meningioma\n", ",glioma\n"))
    res = runner.invoke(
        main, ["study", "ingest", str(out), "--allow-early", str(broken), *map(str, sheets[1:])]
    )
    assert res.exit_code == 2
    assert "nothing was ingested" in res.output
    assert "broken.csv line" in res.output and "'glioma'" in res.output
    assert not (out / "answers.jsonl").exists()

    res = runner.invoke(main, ["study", "ingest", str(out), *map(str, sheets)])
    assert res.exit_code == 2  # every session is in the future: refused (the washout)
    assert "may not be read before 2027-03-01" in res.output
    res = runner.invoke(main, ["study", "ingest", str(out), "--allow-early", *map(str, sheets)])
    assert res.exit_code == 0, res.output
    assert "stored 10 answers for reader 'ann' session 1 from file" in res.output
    assert "before its not-before date; accepted with --allow-early (recorded)" in res.output
    assert len(read_answers(out / "answers.jsonl")) == 2 * 10 * 3
    res = runner.invoke(main, ["study", "ingest", str(out), str(sheets[0])])
    assert res.exit_code == 0 and "skipped" in res.output

    res = runner.invoke(main, ["study", "tally", str(out)])
    assert res.exit_code == 0, res.output
    assert "30 paired readings; same diagnosis 100.0%" in res.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["pooled"]["figure6"]["both_correct"] == 30
    assert (out / "report" / "figure6.png").is_file()
    assert (out / "report" / "imrmc" / "ids.csv").is_file()


def test_cli_create_needs_a_source(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("classes: [a, b]\nreaders: [r]\nseed: 1\n")
    res = CliRunner().invoke(main, ["study", "create", str(config), str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "give --archive PREFIX, or --originals DIR --protected DIR --labels CSV" in res.output
