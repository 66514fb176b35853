"""The keygen / train / encrypt-slices commands end to end on a tiny slice folder."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medcrypt.cli import main
from medcrypt.medical import decode_png16, encode_png16
from medcrypt.processing import EncryptionKey, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]
) -> None:
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2:
            np.save(folder / f"s{i:03d}.npy", img)
        else:
            (folder / f"s{i:03d}.png").write_bytes(encode_png16(img))


@pytest.mark.timeout(120)
def test_keygen_train_encrypt_end_to_end(tmp_path: Path, blobs, classes) -> None:  # type: ignore[no-untyped-def]
    images, labels = blobs[0][:36], blobs[1][:36]
    # phantom-like PNGs are quantised already; the budget is checked against what was read
    images = np.round(images * 65535) / 65535
    data = tmp_path / "slices"
    _write_folder(data, images.astype(np.float32), labels, classes)
    runner = CliRunner()

    key_path = tmp_path / "key.json"
    res = runner.invoke(
        main,
        [
            "-q",
            "keygen",
            "--classes",
            ",".join(classes),
            "--mode",
            "paper",
            "--combiner",
            "concat",
            "--seed",
            "4",
            "--eps",
            "1.0",
            "--iters",
            "10",
            "--step",
            "0.15",
            "--out",
            str(key_path),
        ],
    )
    assert res.exit_code == 0, res.output
    key = EncryptionKey.load(key_path)
    assert key.fingerprint in res.output
    assert key.secret.get_secret_value() not in res.output
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    model_path = tmp_path / "model.pt"
    res = runner.invoke(
        main,
        [
            "-q",
            "train",
            "--data",
            str(data),
            "--arch",
            "vgg11",
            "--width",
            "8",
            "--epochs",
            "4",
            "--batch-size",
            "12",
            "--classes",
            ",".join(classes),
            "--out",
            str(model_path),
        ],
    )
    assert res.exit_code == 0, res.output
    loaded = load_checkpoint(model_path)
    assert loaded.class_names == classes and len(loaded.history) == 4
    assert loaded.content_hash in res.output

    def encrypt_slices(key_file: Path, out_dir: Path, *extra: str) -> Result:
        args = ["-q", "encrypt-slices", "--data", str(data), "--key", str(key_file)]
        args += ["--model", str(model_path), "--out", str(out_dir), *extra]
        return runner.invoke(main, args)

    out = tmp_path / "enc"
    res = encrypt_slices(key_path, out)
    assert res.exit_code == 0, res.output
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".png", ".npy"))
    inputs = sorted(p.relative_to(data) for p in data.rglob("*") if p.suffix in (".png", ".npy"))
    assert written == inputs  # same layout and formats
    for rel in inputs:
        src = data / rel
        dst = out / rel
        if rel.suffix == ".png":
            before, after = decode_png16(src.read_bytes()), decode_png16(dst.read_bytes())
        else:
            before, after = np.load(src), np.load(dst)
        dist = np.sqrt(((after.astype(np.float64) - before.astype(np.float64)) ** 2).sum())
        assert 0.0 < dist <= 1.0 + 1e-6  # float32 decode of uint16 codes: ~1e-8 noise
        record = json.loads(dst.with_suffix(".json").read_text())
        assert record["key_fingerprint"] == key.fingerprint
        assert record["l2"] <= 1.0
        assert record["psnr"] > 30
        assert "targets" not in record and "secret" not in record
        # the release policy (processing/_release.py): no combiner, the key's PGD settings
        assert "combiner" not in record and "concat" not in json.dumps(record)
        assert record["pgd"] == key.pgd.model_dump(mode="json") and record["n_targets"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slices"] == 36 and summary["max_l2"] <= 1.0
    assert "combiner" not in summary and summary["pgd"] == key.pgd.model_dump(mode="json")
    assert key.secret.get_secret_value() not in (out / "summary.json").read_text()

    # unlabelled use: labels from the base model's predictions
    res = encrypt_slices(key_path, tmp_path / "enc2", "--labels", "predicted", "--format", "npy")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "enc2" / "summary.json").read_text())["label_source"] == (
        "predicted"
    )

    # refusing: existing outputs, and a key made for other classes
    res = encrypt_slices(key_path, out)
    assert res.exit_code == 2 and "--overwrite" in res.output
    other_key = tmp_path / "other.json"
    runner.invoke(main, ["-q", "keygen", "--phantom-classes", "--out", str(other_key)])
    res = encrypt_slices(other_key, tmp_path / "enc3")
    assert res.exit_code == 2
    assert "key has 5 classes, model has 3" in res.output


def test_helps_describe_the_layout() -> None:
    runner = CliRunner()
    for cmd in ("keygen", "train", "encrypt-slices"):
        res = runner.invoke(main, [cmd, "--help"])
        assert res.exit_code == 0, res.output
    assert "DIR/<class_name>/<name>.png" in runner.invoke(main, ["train", "--help"]).output


def test_keygen_needs_classes(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "k.json")])
    assert res.exit_code != 0
    assert "--phantom-classes" in res.output


@pytest.mark.timeout(120)
def test_keygen_modes_and_encrypt_slices_records(tmp_path: Path, blobs, trained, classes) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing import save_checkpoint

    images, labels = blobs[0][:6], blobs[1][:6]
    images = np.where(images > 0.3, images, 0.0)  # black background, like MRI slices
    images = (np.round(images * 65535) / 65535).astype(np.float32)
    data = tmp_path / "slices"
    _write_folder(data, images, labels, classes)
    model_path = tmp_path / "model.pt"
    save_checkpoint(model_path, trained, arch="resnet18", class_names=classes, width=8)
    runner = CliRunner()
    key_path = tmp_path / "key.json"
    base = ["-q", "keygen", "--classes", ",".join(classes), "--seed", "2"]
    res = runner.invoke(main, [*base, "--mode", "paper", "--norm", "linf", "--out", str(key_path)])
    assert res.exit_code == 2 and "paper" in res.output  # paper is L2 only
    args = ["--mode", "shortcut+poison", "--norm", "linf", "--eps", "0.05", "--step", "0.01"]
    args += ["--iters", "3", "--restarts", "2", "--out", str(key_path)]
    res = runner.invoke(main, [*base, *args])
    assert res.exit_code == 0, res.output
    key = EncryptionKey.load(key_path)
    assert (key.pgd.mode, key.pgd.norm, key.pgd.foreground) == ("shortcut+poison", "linf", True)
    assert (key.pgd.restarts, key.pgd.augment) == (2, 1.0)  # augment: the poison default

    out = tmp_path / "enc"
    cmd = ["-q", "encrypt-slices", "--data", str(data), "--key", str(key_path)]
    cmd += ["--model", str(model_path), "--out", str(out), "--ensemble", str(model_path)]
    res = runner.invoke(main, cmd)
    assert res.exit_code == 0, res.output
    for rel in sorted(p.relative_to(data) for p in data.rglob("*") if p.suffix in (".png", ".npy")):
        if rel.suffix == ".png":
            before, after = (
                decode_png16((data / rel).read_bytes()),
                decode_png16((out / rel).read_bytes()),
            )
        else:
            before, after = np.load(data / rel), np.load(out / rel)
        diff = np.abs(after.astype(np.float64) - before.astype(np.float64))
        assert 0 < diff.max() <= 0.05 + 1e-6
        assert (before == after).mean() > 0.5  # the black background is released unchanged
        record = json.loads((out / rel).with_suffix(".json").read_text())
        assert (record["mode"], record["norm"], record["foreground"]) == (
            "shortcut+poison",
            "linf",
            True,
        )
        assert record["psnr_foreground"] < record["psnr"]
        assert 0 < record["foreground_fraction"] < 0.5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "shortcut+poison" and summary["ensemble_models"] == 1
    assert key.secret.get_secret_value() not in (out / "summary.json").read_text()


@pytest.mark.timeout(180)
def test_keygen_default_is_unlearnable_and_craft_names_the_surrogate(
    tmp_path: Path, blobs, trained, classes
) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing import save_checkpoint

    images, labels = blobs[0][:24], blobs[1][:24]
    images = np.where(images > 0.3, images, 0.0)
    images = (np.round(images * 65535) / 65535).astype(np.float32)
    data = tmp_path / "slices"
    _write_folder(data, images, labels, classes)
    runner = CliRunner()
    key_path = tmp_path / "key.json"
    base = ["-q", "keygen", "--classes", ",".join(classes), "--seed", "2", "--eps", "1.0"]
    res = runner.invoke(main, [*base, "--combiner", "concat", "--out", str(key_path)])
    assert res.exit_code == 2 and "maps every class to itself" in res.output
    res = runner.invoke(main, [*base, "--iters", "4", "--out", str(key_path)])
    assert res.exit_code == 0, res.output
    assert "mode unlearnable" in res.output and "next: medcrypt craft" in res.output
    key = EncryptionKey.load(key_path)
    assert (key.pgd.mode, key.combiner, key.surrogate) == ("unlearnable", "none", ())
    assert key.targets == ((0,), (1,), (2,))
    assert key.pgd.step == pytest.approx(2.5 * 1.0 / 4)

    other = tmp_path / "other.pt"
    save_checkpoint(other, trained, arch="resnet18", class_names=classes, width=8)

    def encrypt(model: Path, out: Path) -> Result:
        cmd = ["-q", "encrypt-slices", "--data", str(data), "--key", str(key_path)]
        return runner.invoke(main, [*cmd, "--model", str(model), "--out", str(out)])

    res = encrypt(other, tmp_path / "enc0")
    assert res.exit_code == 2 and "names no surrogate" in res.output
    surrogate = tmp_path / "surrogate.pt"
    craft = ["-q", "craft", "--key", str(key_path), "--data", str(data), "--out", str(surrogate)]
    res = runner.invoke(main, [*craft, "--sample", "0.5", "--width", "4", "--rounds", "2"])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(surrogate.stat().st_mode) == 0o600
    named = EncryptionKey.load(key_path)
    loaded = load_checkpoint(surrogate)
    assert named.surrogate == (loaded.content_hash,) and loaded.arch == "cnn"
    assert named.fingerprint in res.output and key.fingerprint in res.output
    res = runner.invoke(main, [*craft, "--sample", "0.5"])
    assert res.exit_code == 2 and "--force" in res.output  # never overwrites silently
    robust = [*craft[:-1], str(tmp_path / "robust.pt"), "--width", "4", "--rounds", "1"]
    res = runner.invoke(main, [*robust, "--robust", "0.5"])
    assert res.exit_code == 0 and "robust 0.5" in res.output, res.output
    assert runner.invoke(main, [*robust, "--robust", "2", "--force"]).exit_code == 2
    named.save(key_path, overwrite=True)  # the key names the first surrogate again
    res = encrypt(other, tmp_path / "enc1")
    assert res.exit_code == 2 and "crafted with surrogate" in res.output
    out = tmp_path / "enc2"
    res = encrypt(surrogate, out)
    assert res.exit_code == 0, res.output
    records = [json.loads(p.read_text()) for p in out.glob("*/s*.json")]
    assert len(records) == 24
    assert {r["mode"] for r in records} == {"unlearnable"}
    assert max(r["l2"] for r in records) <= 1.0 + 1e-6
    # keygen's default per-pixel cap for the mode, recorded and held on the stored PNGs
    from medcrypt.processing import UNLEARNABLE_LINF_CAP

    assert {r["linf_cap"] for r in records} == {UNLEARNABLE_LINF_CAP}
    assert 0 < max(r["linf"] for r in records) <= UNLEARNABLE_LINF_CAP
    assert named.secret.get_secret_value() not in (out / "summary.json").read_text()

    paper_key = tmp_path / "paper.json"
    runner.invoke(main, [*base, "--mode", "paper", "--out", str(paper_key)])
    res = runner.invoke(main, ["-q", "craft", "--key", str(paper_key), "--data", str(data),
                               "--out", str(tmp_path / "s2.pt")])  # fmt: skip
    assert res.exit_code == 2 and "craft serves mode unlearnable" in res.output
