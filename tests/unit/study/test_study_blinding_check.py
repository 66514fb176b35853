"""Blinding check in ``study create`` (issue 12 item 1), on constructed images.

Each case is a textured ellipse of "anatomy" on an exactly-black background (black share
0.6-0.85, like the originals of the demo archive). Two kinds of protected version:

- ``fill``: the perturbation fills the background (|N(0, 0.02)| everywhere), as today's
  archive job does: the black-pixel share alone separates the versions (AUC 1.0);
- ``foreground``: N(0, 0.01) inside the anatomy only, background bit-identical, as the
  processing fix intends: black share identical per pair (AUC exactly 0.5), every other
  feature and the cross-validated logistic model near 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.medical import encode_png16
from medcrypt.study import StudyConfig, cases_from_folders, create_study
from medcrypt.study._blinding import check_blinding

pytestmark = pytest.mark.timeout(60)

N_CASES = 40
SIZE = 48


def _q(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 65535) / 65535


def _versions(mode: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    out = {}
    for i in range(N_CASES):
        cy, cx = rng.uniform(0.4, 0.6, 2)
        ry, rx = rng.uniform(0.22, 0.36, 2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        texture = (
            rng.uniform(0.3, 0.7)
            + 0.15 * np.sin(xx * rng.uniform(5, 20)) * np.cos(yy * rng.uniform(5, 20))
            + rng.normal(0, 0.03, mask.shape)
        )
        orig = _q(np.where(mask, np.clip(texture, 0.05, 1), 0.0))
        if mode == "fill":
            prot = _q(orig + np.abs(rng.normal(0, 0.02, orig.shape)))
        else:
            noisy = np.clip(orig + rng.normal(0, 0.01, orig.shape), 0.01, 1)
            prot = _q(np.where(mask, noisy, 0.0))
        out[f"case{i:03d}"] = (orig.astype(np.float32), prot.astype(np.float32))
    return out


def _folders(root: Path, mode: str) -> tuple[Path, Path, Path]:
    o, p = root / "orig", root / "prot"
    o.mkdir(parents=True)
    p.mkdir()
    labels = ["case_id,label"]
    for i, (case, (orig, prot)) in enumerate(sorted(_versions(mode).items())):
        (o / f"{case}.png").write_bytes(encode_png16(orig))
        (p / f"{case}.png").write_bytes(encode_png16(prot))
        labels.append(f"{case},{('a', 'b')[i % 2]}")
    csv = root / "labels.csv"
    csv.write_text("\n".join(labels) + "\n")
    return o, p, csv


def _config() -> StudyConfig:
    return StudyConfig(classes=("a", "b"), readers=("r1", "r2"), seed=1, name="blind")


def test_background_filled_versions_separate_and_warn(tmp_path: Path) -> None:
    o, p, labels = _folders(tmp_path / "src", "fill")
    made = create_study(_config(), cases_from_folders(o, p, labels, ("a", "b")), tmp_path / "s")
    check = made.blinding
    assert check is not None and check.separable
    black = {f.name: f for f in check.features}["black_share"]
    assert black.separability == 1.0
    assert black.original_min > 0.5 and black.protected_max < 0.05
    assert check.logistic_auc is not None and check.logistic_auc > 0.95
    readme = (tmp_path / "s" / "README.md").read_text()
    assert "BLINDING WARNING" in readme
    assert f"Black-pixel share: AUC {black.separability:.2f}" in readme
    assert (
        f"| logistic model on all of the above, cross-validated | | | {check.logistic_auc:.2f}"
        in readme
    )
    saved = json.loads((tmp_path / "s" / "blinding.json").read_text())
    assert saved["separable"] is True and saved["logistic_auc"] == check.logistic_auc
    # the README is not handed to readers
    assert not any(p.name == "README.md" for p in (tmp_path / "s" / "packets").rglob("*"))


def test_foreground_only_versions_do_not_separate(tmp_path: Path) -> None:
    o, p, labels = _folders(tmp_path / "src", "foreground")
    made = create_study(_config(), cases_from_folders(o, p, labels, ("a", "b")), tmp_path / "s")
    check = made.blinding
    assert check is not None and not check.separable
    black = {f.name: f for f in check.features}["black_share"]
    assert black.auc == 0.5  # bit-identical backgrounds: every pair ties
    assert check.logistic_auc is not None and 0.4 < check.logistic_auc <= 0.6
    assert all(f.separability <= 0.6 for f in check.features)
    readme = (tmp_path / "s" / "README.md").read_text()
    assert "Blinding check passed" in readme and "BLINDING WARNING" not in readme


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_null_result_is_stable_across_seeds(seed: int) -> None:
    assert not check_blinding(_versions("foreground", seed)).separable
    assert check_blinding(_versions("fill", seed)).separable


def test_cli_create_prints_the_warning_on_stderr(tmp_path: Path) -> None:
    o, p, labels = _folders(tmp_path / "src", "fill")
    config = tmp_path / "study.yaml"
    config.write_text("name: blind\nclasses: [a, b]\nreaders: [r1]\nseed: 2\n")
    res = CliRunner().invoke(
        main,
        ["-q", "study", "create", str(config), str(tmp_path / "s"), "--originals", str(o),
         "--protected", str(p), "--labels", str(labels)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "BLINDING WARNING" in res.stderr and "AUC 1.00" in res.stderr
    assert "BLINDING WARNING" not in res.stdout
    assert "blinding figures for the ethics file" in res.stdout
