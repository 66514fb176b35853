"""``medcrypt report`` on an S3 dest, over HTTP against moto's server (real boto3 path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "report"))
from _report_dest import write_dest

pytestmark = pytest.mark.integration


def test_report_reads_an_s3_dest(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/protected"
    write_dest(open_store(uri, endpoint_url=moto_server))
    out = tmp_path / "run.html"
    res = CliRunner().invoke(
        main, ["report", uri, "--endpoint-url", moto_server, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert 'data-field="summary.run_id">20261201T000000Z-new<' in page
    assert 'data-field="case.case_b.psnr">36.25<' in page
    assert page.count('src="data:image/png;base64,') == 10  # 3 cases x 3 panels + histograms
    assert 'data-field="quarantine.case_id">bad_3<' in page
