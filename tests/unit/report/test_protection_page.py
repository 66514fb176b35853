"""The protection page: numbers from the JSON, a frontier for several budgets, counter-attacks."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.report import render_protection_page


def _field(page: str, name: str) -> list[str]:
    pattern = rf'data-field="{re.escape(name)}"[^>]*>(.*?)</'
    return [html.unescape(m) for m in re.findall(pattern, page, flags=re.S)]


def _evaluate(tmp_path: Path) -> dict[str, Any]:
    """A real (tiny) `medcrypt evaluate` run: the JSON and the page it writes."""
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        main,
        [
            "-q",
            "evaluate",
            "--n-per-class",
            "4",
            "--n-test-per-class",
            "2",
            "--size",
            "16",
            "--epochs",
            "1",
            "--iters",
            "2",
            "--width",
            "2",
            "--archs",
            "vgg11",
            "--base-width",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "protection_report.(json|md|html)" in res.output
    return {
        "json": json.loads((out / "protection_report.json").read_text()),
        "html": (out / "protection_report.html").read_text(),
    }


@pytest.mark.slow  # a real evaluation: ~15 s of CPU, longer on a loaded machine
def test_evaluate_writes_a_page_with_the_json_numbers(tmp_path: Path) -> None:
    made = _evaluate(tmp_path)
    rep, page = made["json"], made["html"]
    for j, res in enumerate(rep["results"]):
        f = f"protection.0.results.{j}"
        assert _field(page, f"{f}.arch") == [res["arch"]]
        for name in ("clean_final", "original_test_peak", "encrypted_test_final"):
            assert _field(page, f"{f}.{name}") == [f"{100 * res[name]:.1f}%"]
    assert _field(page, "protection.0.test_perceptual.psnr_mean") == [
        f"{rep['test_perceptual']['psnr_mean']:.2f}"
    ]
    assert "the bar" in page  # the verdict line of the CLI
    assert page.count('src="data:image/png;base64,') == 1  # curves; one budget: no frontier
    assert "Frontier" not in page and "Counter-attacks" not in page

    # several budgets: a frontier; a counter-attack entry: a table of it
    second = copy.deepcopy(rep)
    second["pgd"]["eps"] = 2.0
    second["test_perceptual"]["psnr_mean"] -= 6.0
    second["counter_attacks"] = [
        {"attack": "jpeg_q10", "original_test_peak_accuracy": 0.8125},
        {"attack": "blur", "original_test_peak_accuracy": 0.5},
    ]
    page2 = render_protection_page([rep, second])
    assert "Frontier" in page2 and 'alt="protection frontier"' in page2
    assert "jpeg_q10" in page2 and "81.2%" in page2
    assert _field(page2, "protection.1.counter_attacks")
    assert page2.count('src="data:image/png;base64,') == 3
