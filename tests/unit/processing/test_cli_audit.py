"""`medcrypt audit counter-attacks`: reads slice folders, writes the audit, refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medcrypt.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        folder = root / ("left", "right", "bottom")[int(c)]
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:04d}.npy", img.astype(np.float32))


@pytest.fixture()
def folders(
    tmp_path: Path,
    blobs: tuple[np.ndarray, np.ndarray],
    blobs_test: tuple[np.ndarray, np.ndarray],
) -> dict[str, Path]:
    x, y = blobs[0][:18], blobs[1][:18]
    xt, yt = blobs_test[0][:9], blobs_test[1][:9]
    rng = np.random.default_rng(0)
    released = np.clip(x + rng.normal(0, 0.01, x.shape), 0, 1)
    paths = {name: tmp_path / name for name in ("released", "clean", "test")}
    _write(paths["released"], released, y)
    _write(paths["clean"], x, y)
    _write(paths["test"], xt, yt)
    return paths


def test_counter_attacks_command_writes_the_audit(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        ["-q", "audit", "counter-attacks", "--released", str(folders["released"]),
         "--test", str(folders["test"]), "--clean", str(folders["clean"]), "--eps", "0.5",
         "--attacks", "none,jpeg75,mix_clean20", "--archs", "vgg11", "--width", "4",
         "--epochs", "1", "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    audit = json.loads((out / "counter_attacks.json").read_text())
    assert [r["attack"]["name"] for r in audit["rows"]] == ["none", "jpeg75", "mix_clean20"]
    assert audit["n_train"] == 18 and audit["n_test"] == 9 and len(audit["clean"]) == 1
    assert "jpeg75" in (out / "counter_attacks.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attacks", "jpeg5"], "unknown counter-attack(s) ['jpeg5']"),
        (["--archs", "lenet"], "unknown architecture(s) ['lenet']"),
        (["--attacks", "mix_clean20"], "need --clean"),
    ],
)
def test_counter_attacks_command_refuses_bad_input(
    folders: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    res = CliRunner().invoke(
        main,
        ["audit", "counter-attacks", "--released", str(folders["released"]), "--test",
         str(folders["test"]), "--eps", "0.5", "--out", str(tmp_path / "o"), *extra],
    )  # fmt: skip
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "o").exists()
