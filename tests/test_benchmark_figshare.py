"""benchmarks/protection_figshare.py end to end on a handful of synthetic figshare-like slices.

A stand-in folder with the real set's layout (labels.csv with its split column, 8-bit PNGs
under <split>/<class>/) so the script cannot rot unnoticed; seconds, not a measurement.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("glioma", "meningioma", "pituitary")


@pytest.fixture(scope="module")
def fake_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("figshare")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    head = ((yy - 32) ** 2 + (xx - 32) ** 2) < 26**2
    rows = []
    for split, n in (("train", 6), ("test", 3), ("heldout", 1)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                img = head * (0.4 + 0.1 * rng.random((64, 64)))
                cy, cx = (20, 20 + 12 * c)
                img[cy - 4 : cy + 4, cx - 4 : cx + 4] = 0.9
                ident = f"{split[:2]}{c}{i}"
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{ident}.png")
                rows.append({"id": ident, "split": split, "class": name})
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "split", "class"])
        w.writeheader()
        w.writerows(rows)
    return root


def _run(fake_set: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "protection_figshare.py"),
        "--data", str(fake_set), "--out", str(out), "--size", "32", "--limit", "100",
        "--epochs", "1", "--base-epochs", "1", "--base-width", "4", "--width", "4",
        "--iters", "2", "--poison-iters", "2", "--restarts", "1", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_frontier_part_writes_rows_table_and_plot(fake_set: Path, tmp_path: Path) -> None:
    res = _run(fake_set, tmp_path, "--part", "frontier", "--modes", "paper,paper_fg",
               "--psnr", "40,30")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "frontier.json").read_text())
    assert [(r["mode"], r["target_psnr_fg"]) for r in result["rows"]] == [
        ("paper", 40.0), ("paper", 30.0), ("paper_fg", 40.0), ("paper_fg", 30.0)
    ]  # fmt: skip
    row = result["rows"][0]
    assert set(row["victims"]) == {"resnet18", "vgg11"}
    assert row["perceptual_train"]["psnr_fg"] > result["rows"][1]["perceptual_train"]["psnr_fg"]
    assert set(result["clean"]) == {"resnet18", "vgg11"} and result["chance"]["balanced"] == 1 / 3
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert "| paper_fg |" in (tmp_path / "frontier.md").read_text()


def test_counter_and_keys_parts(fake_set: Path, tmp_path: Path) -> None:
    res = _run(fake_set, tmp_path, "--part", "counter", "--modes", "paper", "--archs", "vgg11",
               "--counters", "none,jpeg10,adv_train")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    counter = json.loads((tmp_path / "counter.json").read_text())["counter"]["paper"]
    assert [r["attack"]["name"] for r in counter["audit"]["rows"]] == [
        "none",
        "jpeg10",
        "adv_train",
    ]
    res = _run(fake_set, tmp_path, "--part", "keys", "--attacker-n", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    keys = json.loads((tmp_path / "keys.json").read_text())["key_recovery"]
    assert [k["key"] for k in keys] == ["basic", "combined"]
    assert all(k["candidates"] == 2 and len(k["classes"]) == 3 for k in keys)


def test_deadline_stops_between_rows(fake_set: Path, tmp_path: Path) -> None:
    res = _run(fake_set, tmp_path, "--part", "frontier", "--modes", "paper", "--deadline", "0")
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "frontier.json").read_text())
    assert result["rows"] == [] and result["stopped_early"] and result["clean"]
