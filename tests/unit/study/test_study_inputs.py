"""Study config from YAML, and reading cases from an archive prefix or two folders."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medcrypt.config import load_config
from medcrypt.errors import ConfigError, StudyError
from medcrypt.medical import CLASS_NAMES, encode_png16
from medcrypt.study import (
    StudyCase,
    StudyConfig,
    cases_from_archive,
    cases_from_folders,
    create_study,
    load_key,
)

pytestmark = pytest.mark.timeout(60)


def test_config_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s1\nclasses: [a, b, c]\nreaders: [r1, r2]\ndesign: paper\nseed: 5\n"
        "washout_days: 14\nstart_date: 2027-02-01\nnon_inferiority_margin: 0.1\n"
    )
    cfg = load_config(path, StudyConfig)
    assert cfg.classes == ("a", "b", "c")
    assert cfg.start_date == dt.date(2027, 2, 1)
    assert cfg.design == "paper"
    with pytest.raises(Exception, match="frozen"):
        cfg.seed = 6  # type: ignore[misc]
    assert load_config(path, StudyConfig, overrides={"seed": 9}).seed == 9


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("classes: [a, A]\nreaders: [r]\nseed: 1\n", "classes"),
        ("classes: [a, b]\nreaders: ['dr x']\nseed: 1\n", "readers"),
        ("classes: [a, b]\nreaders: [r]\nseed: 1\ndesign: crossover\n", "design"),
        (
            "classes: [a, b]\nreaders: [r]\nseed: 1\nnon_inferiority_margin: 1.5\n",
            "non_inferiority",
        ),
        ("classes: [a]\nreaders: [r]\nseed: 1\n", "classes"),
        ("classes: [a, b]\nreaders: [r]\nseed: 1\nkey: abc\n", "key"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, StudyConfig)
    assert str(path) in str(info.value)
    assert field in str(info.value)


def _archive(root: Path, phantoms) -> Path:  # type: ignore[no-untyped-def]
    """Lay the phantom folders out like the archive job's dest prefix."""
    prefix = root / "dest"
    for i, (case, truth) in enumerate(sorted(phantoms.truth.items())):
        (prefix / case).mkdir(parents=True)
        (prefix / "_originals" / case).mkdir(parents=True)
        shutil.copy(phantoms.protected / f"{case}.png", prefix / case / "encrypted.png")
        shutil.copy(
            phantoms.originals / f"{case}.png", prefix / "_originals" / case / "original.png"
        )
        # odd cases: the archive job's CaseRecord fields; even cases: a bare class-name label
        record: dict[str, object] = (
            {
                "case_id": case,
                "label": CLASS_NAMES.index(truth),
                "label_name": truth,
                "label_source": "given",
            }
            if i % 2
            else {"case_id": case, "label": truth}
        )
        (prefix / case / "record.json").write_text(json.dumps(record))
    (prefix / "_quarantine").mkdir()
    (prefix / "_runs").mkdir()
    return prefix


def test_archive_prefix_reads_both_versions_and_labels(tmp_path: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    prefix = _archive(tmp_path, phantoms)
    cases = cases_from_archive(prefix, CLASS_NAMES)
    assert {c.case_id: c.label for c in cases} == phantoms.truth
    assert all(c.original.shape == (32, 32) and c.original.dtype == np.float32 for c in cases)
    assert not np.array_equal(cases[0].original, cases[0].protected)


def test_archive_problems_are_listed_together(tmp_path: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    prefix = _archive(tmp_path, phantoms)
    (prefix / "_originals" / "case000" / "original.png").unlink()
    (prefix / "case001" / "record.json").write_text(json.dumps({"case_id": "case001"}))
    (prefix / "case002" / "record.json").write_text(json.dumps({"label": "glioma"}))
    (prefix / "case003" / "encrypted.png").write_bytes(b"not a png")
    (prefix / "case004" / "record.json").write_text(
        json.dumps({"label": 0, "label_name": "meningioma", "label_source": "predicted"})
    )
    with pytest.raises(StudyError) as info:
        cases_from_archive(prefix, CLASS_NAMES)
    text = str(info.value)
    assert "5 problem(s) reading the archive" in text
    assert "case 'case004': record.json's label was predicted by a model" in text
    assert "case 'case000': no original at" in text
    assert "case 'case001': record.json has no 'label' field" in text
    assert "case 'case002': record.json label='glioma' is not one of" in text
    assert "case 'case003'" in text and "not a usable slice PNG" in text


def test_two_folder_mismatches_and_bad_labels_are_listed_together(tmp_path: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    (phantoms.protected / "case000.png").unlink()
    (phantoms.originals / "case001.png").unlink()
    with pytest.raises(StudyError) as info:
        cases_from_folders(phantoms.originals, phantoms.protected, phantoms.labels, CLASS_NAMES)
    text = str(info.value)
    assert "case 'case000': original present but no protected slice" in text
    assert "case 'case001': protected slice present but no original" in text
    phantoms.labels.write_text("case_id,label\ncase002,7\ncase003,glioma\ncase002,0\n")
    with pytest.raises(StudyError) as info:
        cases_from_folders(phantoms.originals, phantoms.protected, phantoms.labels, CLASS_NAMES)
    text = str(info.value)
    assert "line 2: label '7' of case 'case002' is not one of" in text
    assert "line 3: label 'glioma' of case 'case003'" in text
    assert "line 4: case 'case002' is listed twice" in text


def test_slices_of_different_sizes_share_one_canvas(tmp_path: Path, helpers) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    cases = []
    for i, shape in enumerate([(20, 24), (32, 16), (28, 28)]):
        img = rng.random(shape).astype(np.float32)
        cases.append(StudyCase(f"c{i}", CLASS_NAMES[i], img, np.clip(img + 0.01, 0, 1)))
    made = create_study(helpers.make_config(readers=("r1",)), cases, tmp_path / "s")
    sizes = {len(p.read_bytes()) for p in made.packets_dir.rglob("*.png")}
    assert len(sizes) == 1
    key = load_key(made.key_path)
    iid = next(i for i, e in key.images.items() if e.case_id == "c1" and e.version == "original")
    from medcrypt.medical import decode_png16

    shown = decode_png16(next(made.packets_dir.rglob(f"{iid}.png")).read_bytes())
    assert shown.shape == (32, 28)
    np.testing.assert_allclose(shown[:, 6:22], cases[1].original, atol=0.5 / 65535)
    assert np.all(shown[:, :6] == 0)


def test_create_refuses_to_overwrite_a_study_or_put_the_key_in_packets(
    tmp_path: Path, phantoms, helpers
) -> None:  # type: ignore[no-untyped-def]
    cfg = helpers.make_config()
    cases = cases_from_folders(phantoms.originals, phantoms.protected, phantoms.labels, cfg.classes)
    create_study(cfg, cases, tmp_path / "s")
    with pytest.raises(StudyError, match="a study already exists here"):
        create_study(cfg, cases, tmp_path / "s")
    with pytest.raises(StudyError, match="must not be inside the packets folder"):
        create_study(cfg, cases, tmp_path / "t", key_path=tmp_path / "t" / "packets" / "k.json")
    nan = cases[0].protected.copy()
    nan[0, 0] = np.nan
    bad = [
        StudyCase("x", "glioma", cases[0].original, cases[0].protected),
        StudyCase("y", "chordoma", cases[0].original, nan),
    ]
    with pytest.raises(StudyError) as info:
        create_study(cfg, bad, tmp_path / "u")
    assert "case 'x': label 'glioma' not in" in str(info.value)
    assert "case 'y': image holds NaN or infinite values" in str(info.value)
    assert not (tmp_path / "u").exists(), "a refused study must leave nothing behind"


def test_encode_helper_is_used_for_sources(tmp_path: Path) -> None:
    """Sanity of the fixture path: encode_png16 output is decodable by the study reader."""
    from medcrypt.study._images import read_slice_png

    p = tmp_path / "x.png"
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    p.write_bytes(encode_png16(img))
    np.testing.assert_allclose(read_slice_png(p, case_id="x"), img, atol=0.5 / 65535)


def test_cli_create_from_a_local_archive_prefix(tmp_path: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from medcrypt.cli import main

    prefix = _archive(tmp_path, phantoms)
    config = tmp_path / "s.yaml"
    config.write_text(
        "classes: [meningioma, chordoma, schwannoma, pituitary_adenoma, craniopharyngioma]\n"
        "readers: [r1]\nseed: 1\n"
    )
    res = CliRunner().invoke(
        main,
        [
            "-q",
            "study",
            "create",
            str(config),
            str(tmp_path / "s"),
            "--archive",
            str(prefix),
            "--pdf",
        ],
    )
    assert res.exit_code == 0, res.output
    key = load_key(tmp_path / "s" / "unblinding" / "key.json")
    assert key.cases() == phantoms.truth
    assert (tmp_path / "s" / "packets" / "r1" / "session-2" / "packet.pdf").is_file()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_archive_prefix_on_a_real_s3_endpoint(tmp_path: Path, phantoms, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same archive read over HTTP from moto's S3 server through medcrypt.storage."""
    import logging

    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="dest")
        prefix = _archive(tmp_path, phantoms)
        for path in sorted(p for p in prefix.rglob("*") if p.is_file()):
            s3.put_object(
                Bucket="dest", Key=f"run1/{path.relative_to(prefix)}", Body=path.read_bytes()
            )
        cases = cases_from_archive("s3://dest/run1", CLASS_NAMES, endpoint_url=endpoint)
    finally:
        server.stop()
    assert {c.case_id: c.label for c in cases} == phantoms.truth
    local = {c.case_id: c for c in cases_from_archive(prefix, CLASS_NAMES)}
    for c in cases:
        np.testing.assert_array_equal(c.protected, local[c.case_id].protected)
