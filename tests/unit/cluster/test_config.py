"""JobConfig: YAML + CLI flags, and every check that must fire before any work starts."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from medcrypt.cluster._config import JobConfig, PGDRequest
from medcrypt.cluster._config_load import (
    cli_overrides,
    job_cli_options,
    job_config_from_mapping,
    load_job_config,
)
from medcrypt.errors import ConfigError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "key.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text("case_id,image,mask\n")
    return {
        "key": str(tmp_path / "key.json"),
        "model": str(tmp_path / "model.pt"),
        "manifest": str(tmp_path / "manifest.csv"),
    }


def _base(files: dict[str, str], **kw: Any) -> dict[str, Any]:
    return {"source": "s3://archive-bucket/in", "dest": "s3://archive-bucket/out", **files, **kw}


def _error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        job_config_from_mapping(data, source="test.yaml")
    return err.value


def test_defaults_and_normalisation(files: dict[str, str], tmp_path: Path) -> None:
    c = job_config_from_mapping(_base(files, source="s3://archive-bucket/in/"))
    assert c.source == "s3://archive-bucket/in"
    assert c.pgd.given() == {}  # unset: the job takes the key's PGD settings
    assert c.override_key_pgd is False
    assert (c.formats, c.num_gpus, c.write_originals, c.slice_fallback) == (
        ("png",),
        0.0,
        False,
        "error",
    )
    local = job_config_from_mapping(_base(files, source=str(tmp_path / "a" / ".." / "src")))
    assert local.source == str(tmp_path / "src")
    assert pickle.loads(pickle.dumps(c)) == c  # ships to Ray workers


def test_yaml_with_relative_paths_and_cli_overrides(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        "source: s3://archive-bucket/in\n"
        "dest: s3://archive-bucket/out\n"
        "manifest: manifest.csv\n"  # relative to the YAML file
        "key: key.json\n"
        "model: model.pt\n"
        "formats: [png, dicom]\n"
        "pgd: {eps: 1.0, iters: 7}\n"
        "num_gpus: 1\n"
        "min_actors: 2\n"
        "max_actors: 8\n",
        encoding="utf-8",
    )
    monkeypatch.chdir("/")  # the YAML's paths must not depend on the working directory
    c = load_job_config(cfg)
    assert (c.key, c.manifest) == (files["key"], files["manifest"])
    assert (c.formats, c.pgd.eps, c.pgd.iters, c.num_gpus) == (("png", "dicom"), 1.0, 7, 1.0)
    # flags win over the file; nested pgd values not given keep the file's value
    o = load_job_config(
        cfg,
        overrides={
            "pgd_eps": 0.5,
            "formats": "nifti",
            "max_actors": 3,
            "dest": None,
            "run_id": None,
        },
    )
    assert (o.pgd.eps, o.pgd.iters, o.formats, o.max_actors) == (0.5, 7, ("nifti",), 3)
    assert o.dest == "s3://archive-bucket/out"


def test_every_field_has_a_cli_flag_and_flags_round_trip(files: dict[str, str]) -> None:
    options = {o.name: o for o in job_cli_options()}

    def names(model: type[BaseModel], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name, info in model.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                out |= names(sub, f"{prefix}{name}_")
            else:
                out.add(prefix + name)
        return out

    assert set(options) == names(JobConfig)
    assert options["pgd_eps"].flag == "--pgd-eps" and options["pgd_eps"].type is float
    assert options["write_originals"].negative == "--no-write-originals"
    assert options["formats"].choices == ("png", "nifti", "dicom")
    flags = {
        "source": "s3://archive-bucket/in",
        "dest": "/tmp/out",
        **files,
        "endpoint_url": "http://127.0.0.1:9000",
        "max_pool": 8,
        "pgd_eps": 1.25,
        "pgd_step": 0.05,
        "pgd_iters": 3,
        "pgd_best_iterate": False,
        "pgd_precision": "fp32",
        "pgd_channels_last": True,
        "pgd_mode": "poison",
        "pgd_norm": "linf",
        "pgd_foreground": False,
        "pgd_restarts": 2,
        "pgd_augment": 0.5,
        "pgd_shortcut_patch": 4,
        "pgd_shortcut_share": 0.25,
        "pgd_linf_cap": 0.05,
        "formats": "png,nifti,dicom",
        "tumour_labels": "4,1",
        "slice_fallback": "largest_brain",
        "write_originals": True,
        "run_id": "nightly-1",
        "num_gpus": 0.5,
        "actor_cpus": 2.0,
        "fetch_cpus": 0.5,
        "min_actors": 2,
        "max_actors": 4,
        "batch_size": 16,
        "actor_start_timeout_s": 30.0,
        "override_key_pgd": True,
        "redo": "changed",
        "claim_lease_s": 60.0,
    }
    assert set(flags) | {"layout"} == set(options)
    c = load_job_config(overrides=flags)
    assert c.pgd == PGDRequest(
        eps=1.25,
        step=0.05,
        iters=3,
        best_iterate=False,
        precision="fp32",
        channels_last=True,
        mode="poison",
        norm="linf",
        foreground=False,
        restarts=2,
        augment=0.5,
        shortcut_patch=4,
        shortcut_share=0.25,
        linf_cap=0.05,
    )
    assert c.override_key_pgd is True
    assert c.tumour_labels == (1, 4)
    assert (c.endpoint_url, c.run_id, c.batch_size, c.min_actors) == (
        "http://127.0.0.1:9000",
        "nightly-1",
        16,
        2,
    )
    with pytest.raises(ConfigError, match="unknown job option 'pgd_epsilon'"):
        cli_overrides({"pgd_epsilon": 1.0})


@pytest.mark.parametrize(
    ("source", "dest", "why"),
    [
        ("s3://archive-bucket/in", "s3://archive-bucket/in", "which is the source"),
        ("s3://archive-bucket/in", "s3://archive-bucket/in/", "which is the source"),
        ("s3://archive-bucket/in", "s3://archive-bucket/in/protected", "lies inside"),
        ("s3://archive-bucket", "s3://archive-bucket/protected", "lies inside"),
        ("s3://archive-bucket/in/raw", "s3://archive-bucket/in", "contains the source"),
        ("/data/in", "/data/in", "which is the source"),
        ("/data/in", "/data/in/sub/../out", "lies inside"),
        ("/data/in", "/data", "contains the source"),
    ],
)
def test_dest_overlapping_source_is_refused(
    files: dict[str, str], source: str, dest: str, why: str
) -> None:
    err = _error(_base(files, source=source, dest=dest))
    assert err.field == "dest"
    assert "expected a dest outside the source" in str(err) and why in str(err)
    assert "test.yaml" in str(err)


@pytest.mark.parametrize(
    ("source", "dest"),
    [
        ("s3://archive-bucket/in", "s3://archive-bucket/in2"),
        ("s3://archive-bucket/in", "s3://other-bucket/in"),
        ("s3://archive-bucket/in", "/data/in"),
        ("/data/in", "/data/in2"),
    ],
)
def test_dest_apart_from_source_is_fine(files: dict[str, str], source: str, dest: str) -> None:
    assert job_config_from_mapping(_base(files, source=source, dest=dest)).dest


def test_bad_values_name_their_fields_all_at_once(files: dict[str, str], tmp_path: Path) -> None:
    err = _error(
        _base(
            files,
            source="s3://Bad_Bucket/in",
            key=str(tmp_path / "missing-key.json"),
            model=str(tmp_path),
            formats="png,jpeg",
            endpoint_url="localhost:9000",
            pgd={"eps": -1},
            num_gpus=1.5,
            run_id="../x",
            tumour_labels="0,2",
            colour="red",
        )
    )
    text = str(err)
    for expected in (
        "source: Value error, source: expected an S3 bucket name",
        "key: Value error, expected an existing file at",
        "found nothing",
        "model: Value error, expected an existing file at",
        "found a folder",
        "formats.1: Input should be 'png', 'nifti' or 'dicom'",
        "endpoint_url: Value error, expected an http(s)://host[:port] URL",
        "pgd.eps: Input should be greater than 0",
        "num_gpus: Value error, expected a fraction <= 1 or a whole number",
        "run_id: Value error, expected 1-64 letters",
        "tumour_labels: Value error, expected mask values >= 1",
        "colour: Extra inputs are not permitted",
    ):
        assert expected in text, expected
    assert err.field == "source"


def test_manifest_or_layout_and_actor_range(files: dict[str, str]) -> None:
    no_manifest = {k: v for k, v in files.items() if k != "manifest"}
    assert "got neither" in str(_error(_base(no_manifest)))
    assert "got both" in str(_error(_base(files, layout="brats")))
    assert job_config_from_mapping(_base(no_manifest, layout="case-folders")).layout == (
        "case-folders"
    )
    assert "layout: Input should be 'brats' or 'case-folders'" in str(
        _error(_base(no_manifest, layout="flat"))
    )
    assert "must not exceed max_actors" in str(_error(_base(files, min_actors=4, max_actors=2)))
    assert "at least one of png" in str(_error(_base(files, formats=[])))
    assert "each format once" in str(_error(_base(files, formats="png,png")))


def test_s3_locations_for_key_model_manifest(files: dict[str, str]) -> None:
    c = job_config_from_mapping(
        _base(files, key="s3://keys-bucket/k.json", model="s3://models-bucket/m.pt")
    )
    assert (c.key, c.model) == ("s3://keys-bucket/k.json", "s3://models-bucket/m.pt")
    assert "naming one object" in str(_error(_base(files, model="s3://models-bucket/")))


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "job.yaml"
    cfg.write_text("source: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job_config(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_job_config(tmp_path / "absent.yaml")
    cfg.write_text("source: s3://archive-bucket/in\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_job_config(cfg, overrides={"dest": "s3://archive-bucket/out"})
    assert f"2 invalid settings ({cfg} + options):" in str(err.value)
    assert f"--key (or key: in {cfg}): required, not given" in str(err.value)
    # a bad value is named where it was given: the file's field, or the flag
    cfg.write_text("pgd: {eps: -1}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_job_config(cfg, overrides={"max_actors": 0})
    text = str(err.value)
    assert f"pgd.eps in {cfg}: must be > 0 (got -1)" in text
    assert "--max-actors: must be >= 1 (got 0)" in text
    assert "Value error" not in text and "Input should" not in text


def test_pgd_request_takes_a_full_settings_object(files: dict[str, str]) -> None:
    # what code building JobConfig(pgd=PGDSettings(...)) directly passes (the demo does)
    from medcrypt.processing import PGDSettings

    c = JobConfig(**_base(files), pgd=PGDSettings(eps=1.0, step=0.1, iters=20))
    assert c.pgd.given() == {
        "eps": 1.0,
        "step": 0.1,
        "iters": 20,
        "best_iterate": True,
        "precision": "auto",
        "mode": "paper",
        "norm": "l2",
        "foreground": True,
        "restarts": 1,
        "augment": 0.0,
        "shortcut_patch": 8,
        "shortcut_share": 0.5,
    }
    assert JobConfig(**_base(files), pgd={"iters": 3}).pgd.given() == {"iters": 3}
