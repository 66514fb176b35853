"""``medcrypt evaluate --mode unlearnable`` (issue 23): the default mode judged by the Table-12
protocol, on phantoms and on a slice folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.processing import UNLEARNABLE_LINF_CAP

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--epochs", "2", "--width", "4", "--archs", "cnn,resnet18", "--craft-width", "4"]
TINY += ["--rounds", "2", "--sample", "0.5", "--eps", "0.5", "--iters", "4"]


def _run(args: list[str]) -> tuple[dict, str, str]:  # type: ignore[type-arg]
    res = CliRunner().invoke(main, ["-q", "evaluate", "--mode", "unlearnable", *TINY, *args])
    assert res.exit_code == 0, res.output
    out = Path(args[args.index("--out") + 1])
    rep = json.loads((out / "protection_report.json").read_text())
    assert (out / "protection_report.md").read_text().startswith("### Protection report")
    return rep, (out / "protection_report.html").read_text(), res.output


@pytest.mark.timeout(300)
def test_evaluate_unlearnable_on_phantoms_and_on_a_slice_folder(tmp_path: Path) -> None:
    phantom = ["--n-per-class", "8", "--n-test-per-class", "4", "--size", "32"]
    rep, page, output = _run([*phantom, "--out", str(tmp_path / "p")])
    pgd = rep["pgd"]
    assert pgd["mode"] == "unlearnable" and pgd["linf_cap"] == pytest.approx(UNLEARNABLE_LINF_CAP)
    assert pgd["step"] == pytest.approx(2.5 * 0.5 / 4)  # the mode's own step default
    assert rep["n_targets"] == [1] * 5  # every class toward itself
    assert rep["base_arch"].startswith("cnn (min-min on 20 slices")  # half of 8 per class
    # released within both budgets, after 16-bit quantisation
    for split in ("train_perceptual", "test_perceptual"):
        assert 0 < rep[split]["l2_max"] <= 0.5
        assert 0 < rep[split]["linf_max"] <= UNLEARNABLE_LINF_CAP + 1e-7
    # judged on victims trained as a thief would (issue 23), and the page says so
    train = rep["settings"]["train"]
    assert train["flip"] and train["rotate"] == 10 and train["crop_scale"] == 0.8
    md = (tmp_path / "p" / "protection_report.md").read_text()
    assert train["schedule"] == "onecycle" and "augmented by flips" in md
    assert [r["arch"] for r in rep["results"]] == ["cnn", "resnet18"]
    for r in rep["results"]:
        assert len(r["history"]) == 2 and r["width"] == 4
        assert 0.0 <= r["original_test_balanced_peak"] <= 1.0
        assert r["original_test_peak"] >= r["original_test_final"]
    # the page names and judges the mode it evaluated
    assert "unlearnable eps 0.5" in page and "mode unlearnable:" in page
    assert "peak original-test balanced accuracy &lt;= 50%" in page
    assert "mode unlearnable:" in output and "the bar" in output

    # a slice folder (as `craft --data` reads it): split per class, same protocol
    folder = tmp_path / "slices"
    made = CliRunner().invoke(
        main, ["-q", "phantoms", "--out", str(folder), "--n-per-class", "8", "--size", "32"]
    )
    assert made.exit_code == 0, made.output
    given = ["--data", str(folder), "--linf-cap", "12/255", "--victims", "plain"]
    rep, _, _ = _run([*given, "--out", str(tmp_path / "d")])
    md = (tmp_path / "d" / "protection_report.md").read_text()
    assert not rep["settings"]["train"]["flip"] and "augmented by" not in md
    assert rep["dataset"] == str(folder)
    assert rep["n_train"] + rep["n_test"] == 40 and rep["n_test"] == 10
    assert rep["pgd"]["linf_cap"] == pytest.approx(12 / 255)
    # measured on the codes read back as float32: within the cap up to float32 rounding (the
    # 16-bit codes themselves are within it exactly: test_linf_cap, the write stage)
    assert rep["train_perceptual"]["linf_max"] <= 12 / 255 + 1e-7


def test_evaluate_unlearnable_refuses_a_model(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    res = CliRunner().invoke(
        main,
        ["-q", "evaluate", "--mode", "unlearnable", "--model", str(model), "--out", str(tmp_path)],
    )
    assert res.exit_code != 0 and "crafts its own surrogate" in res.output
