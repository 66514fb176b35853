"""The run report: which run, which records, what the page says (local store; no Ray)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from _report_dest import write_dest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.errors import ConfigError
from medcrypt.report import foreground_metrics, load_run, render_run_report, sample_gallery
from medcrypt.storage import open_store


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    root = tmp_path / "dest"
    root.mkdir()
    write_dest(open_store(str(root)))
    return root


def _field(page: str, name: str) -> list[str]:
    pattern = rf'data-field="{re.escape(name)}"[^>]*>(.*?)</'
    return [html.unescape(m) for m in re.findall(pattern, page, flags=re.S)]


def test_latest_run_is_the_default_and_records_are_split_by_run(dest: Path) -> None:
    run = load_run(str(dest))
    assert run.run_id == "20261201T000000Z-new"
    assert [r["case_id"] for r in run.records] == ["case_a", "case_b", "case_c"]
    assert len(run.all_records) == 4
    assert len(run.quarantine) == 3
    old = load_run(str(dest), "20261130T000000Z-old")
    assert [r["case_id"] for r in old.records] == ["case_old"]


def test_unknown_run_and_missing_runs_are_clear_errors(dest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no run 'nope'.*20261130T000000Z-old"):
        load_run(str(dest), "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no run summary"):
        load_run(str(empty))


def test_page_numbers_quarantine_groups_and_escaping(dest: Path) -> None:
    page = render_run_report(load_run(str(dest)))
    assert _field(page, "summary.done") == ["3"]
    assert _field(page, "summary.quarantined") == ["3"]
    assert _field(page, "summary.wall_s") == ["12.3"]
    assert _field(page, "summary.stage_totals.decode_s") == ["1.250"]
    assert _field(page, "case.case_b.psnr") == ["36.25"]
    # the old run's case is not in this run's gallery
    assert _field(page, "case.case_old.psnr") == []
    # grouped by kind of error, the larger group first
    first, second = page.index("ImageFormatError at stage fetch"), page.index("SliceSelectionError")
    assert first < second
    assert "2 cases</span>" in page
    # a message is text, never markup
    assert "<b>bold</b>" not in page
    assert "truncated &lt;b&gt;bold&lt;/b&gt;" in page
    assert _field(page, "quarantine.case_id") == ["bad_1", "bad_2", "bad_3"]
    # foreground metrics shown where the record has them
    assert "33.75" in page and "0.9000" in page
    # three panels per case, each an embedded PNG, plus the histogram figure
    assert page.count('src="data:image/png;base64,') == 3 * 3 + 1
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_a_run_that_wrote_nothing_shows_the_dest_and_says_so(dest: Path) -> None:
    store = open_store(str(dest))
    from _report_dest import summary

    store.put(
        "_runs/20261202T000000Z-rerun/summary.json",
        summary(
            "20261202T000000Z-rerun", started="2026-12-02T00:00:00+00:00", done=0, quarantined=0
        )
        .model_dump_json()
        .encode(),
    )
    page = render_run_report(load_run(str(dest)))
    assert "this run wrote none" in page
    assert _field(page, "case.case_old.psnr") == ["41.00"]


def test_gallery_sampling_keeps_the_worst_and_is_seeded() -> None:
    recs = [{"case_id": f"c{i:03d}", "metrics": {"psnr": 40.0 + (i % 17)}} for i in range(100)]
    recs[42]["metrics"]["psnr"] = 20.0
    shown, how = sample_gallery(recs, 12, seed=3)
    assert len(shown) == 12
    assert "c042" in {r["case_id"] for r in shown}
    assert how.startswith("12 of 100 cases: the 2 with the lowest PSNR")
    assert shown == sample_gallery(recs, 12, seed=3)[0]
    assert shown != sample_gallery(recs, 12, seed=4)[0]
    assert sample_gallery(recs[:5], 12)[1] == "all 5 cases"


def test_foreground_metric_names() -> None:
    assert foreground_metrics({"psnr": 1.0}) == {}
    assert foreground_metrics({"foreground": {"psnr": 30.0, "ssim": 0.9}}) == {
        "psnr": 30.0,
        "ssim": 0.9,
    }
    assert foreground_metrics({"psnr_foreground": 31.0, "fg_ssim": 0.8}) == {
        "psnr": 31.0,
        "ssim": 0.8,
    }


def test_cli_writes_the_page(dest: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", str(dest), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"report: {out}" in res.output
    assert "3 done" in res.output
    assert _field(out.read_text(), "summary.run_id") == ["20261201T000000Z-new"]
    bad = CliRunner().invoke(main, ["report", str(dest), "--run-id", "nope"])
    assert bad.exit_code == 2
    assert "no run 'nope'" in bad.output
