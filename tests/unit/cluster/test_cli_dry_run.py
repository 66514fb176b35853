"""``medcrypt encrypt --dry-run`` and bad flags: no Ray, nothing written to dest."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.cluster._ledger import marker_key, output_key, record_key
from medcrypt.cluster._records import SourceObject, source_digest
from medcrypt.medical import CLASS_NAMES, write_phantom_case
from medcrypt.processing import EncryptionKey, build_model, save_checkpoint
from medcrypt.storage import open_store


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    for i in range(2):
        write_phantom_case(src / f"c{i}", label=i, seed=i, shape=(32, 32, 8))
    (src / "c2").mkdir()  # listed in the manifest, but its files are missing
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case_id,image,mask,label\n"
        + "".join(f"c{i},c{i}/image.nii.gz,c{i}/mask.nii.gz,\n" for i in range(3)),
        encoding="utf-8",
    )
    save_checkpoint(
        tmp_path / "model.pt",
        build_model("resnet18", 5, width=8),
        arch="resnet18",
        class_names=CLASS_NAMES,
        width=8,
    )
    key = EncryptionKey.generate(CLASS_NAMES, combiner="mixup", seed=2)
    key.save(tmp_path / "key.json")
    return {"src": src, "dest": tmp_path / "dest", "manifest": manifest, "root": tmp_path}


def _args(job: dict[str, Path]) -> list[str]:
    r = job["root"]
    return [
        "encrypt",
        "--dry-run",
        "--source", str(job["src"]),
        "--dest", str(job["dest"]),
        "--manifest", str(job["manifest"]),
        "--model", str(r / "model.pt"),
        "--key", str(r / "key.json"),
    ]  # fmt: skip


@pytest.mark.timeout(120)
def test_dry_run_lists_new_skipped_and_invalid_and_writes_nothing(job: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, _args(job))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("new") and "c0" in line for line in lines)
    assert any(line.startswith("invalid") and "c2" in line for line in lines)
    assert "2 new, 0 skipped, 0 changed, 0 quarantined, 1 invalid" in result.output
    assert not job["dest"].exists()  # nothing touched

    # mark c0 done for its current source versions and this key: the dry run skips it
    store = open_store(str(job["src"]))
    key = EncryptionKey.load(job["root"] / "key.json")
    sources = [
        SourceObject(role=role, uri=f"{job['src']}/c0/{role}.nii.gz",
                     version=store.stat(f"c0/{role}.nii.gz").version)
        for role in ("image", "mask")
    ]  # fmt: skip
    dest = open_store(str(job["dest"]))
    dest.put(marker_key("c0", source_digest(sources, key.fingerprint)), b"")
    # a marker alone is not enough: the record and the outputs must be there too
    result = CliRunner().invoke(main, _args(job))
    assert "2 new, 0 skipped, 0 changed, 0 quarantined, 1 invalid" in result.output, result.output
    dest.put(record_key("c0"), b"{}")
    dest.put(output_key("c0", "png"), b"png")
    result = CliRunner().invoke(main, _args(job))
    assert "1 new, 1 skipped, 0 changed, 0 quarantined, 1 invalid" in result.output, result.output


@pytest.mark.timeout(60)
def test_bad_flag_values_stop_before_any_work(job: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, [*_args(job), "--pgd-eps", "-1", "--formats", "gif"])
    assert result.exit_code == 2
    # each problem named by the flag that gave it, in plain words (not pydantic's)
    assert result.output.splitlines() == [
        "error: 2 invalid options:",
        "  --pgd-eps: must be > 0 (got -1.0)",
        "  --formats: must be 'png', 'nifti' or 'dicom' (got 'gif')",
    ], result.output
    one = CliRunner().invoke(main, [*_args(job), "--max-actors", "0"])
    assert one.exit_code == 2
    assert one.output == "error: --max-actors: must be >= 1 (got 0)\n"
    assert not job["dest"].exists()


@pytest.mark.timeout(60)
def test_a_refused_run_prints_its_error_and_nothing_else(job: dict[str, Path]) -> None:
    # a key made for other classes: refused before any work, without a progress bar line
    other = job["root"] / "other-key.json"
    EncryptionKey.generate(("x", "y", "z"), combiner="mixup", seed=1).save(other)
    args = [a for a in _args(job) if a != "--dry-run"]
    args[args.index("--key") + 1] = str(other)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: key has 3 classes, model has 5")
    assert result.output.count("\n") == 1 and "━" not in result.output, result.output
    assert not job["dest"].exists()
