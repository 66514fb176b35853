from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import Field

from medcrypt.config import StrictModel, load_config
from medcrypt.errors import ConfigError, ImageFormatError, ManifestError, MedcryptError


class _Cfg(StrictModel):
    name: str
    iters: int = Field(ge=1)


def test_error_names_case_and_file() -> None:
    err = ImageFormatError("expected 3D, got 4D", case_id="c1", uri="s3://b/c1/img.nii.gz")
    assert str(err) == "case 'c1', file 's3://b/c1/img.nii.gz': expected 3D, got 4D"
    assert isinstance(err, MedcryptError)


def test_errors_survive_pickling_with_context() -> None:
    err = ManifestError(["line 3: missing image", "line 7: unknown split 'x'"], uri="m.csv")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ManifestError
    assert back.problems == err.problems and back.uri == "m.csv"
    assert "line 7" in str(back)


def test_load_config_reports_file_and_every_field(tmp_path: Path) -> None:
    p = tmp_path / "job.yaml"
    p.write_text("name: 3\niters: 0\nextra: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(p, _Cfg)
    text = str(info.value)
    assert str(p) in text
    assert "iters" in text and "extra" in text and "name" in text


def test_load_config_overrides_and_frozen(tmp_path: Path) -> None:
    p = tmp_path / "job.yaml"
    p.write_text("name: a\niters: 5\n")
    cfg = load_config(p, _Cfg, overrides={"iters": 7, "name": None})
    assert (cfg.name, cfg.iters) == ("a", 7)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        cfg.iters = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("a: [", "not valid YAML"), ("- 1\n- 2\n", "mapping at the top level")],
)
def test_load_config_bad_yaml(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(p, _Cfg)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", _Cfg)
