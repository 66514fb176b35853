"""ray_config.yaml passes Ray's own cluster-launcher validation; a broken one does not."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "ray_config.yaml"


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before talking to AWS: fill defaults, then schema + sanity checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_ray_accepts_the_config(config: dict[str, Any]) -> None:
    prepared = _validate(config)
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    gpu_types = {k: v for k, v in types.items() if v["resources"].get("GPU", 0) >= 4}
    assert {v["node_config"]["InstanceType"] for v in gpu_types.values()} >= {
        "g5.12xlarge",
        "p4d.24xlarge",
    }
    for node_type in gpu_types.values():  # autoscaling range, starting from zero
        assert node_type["min_workers"] == 0 < node_type["max_workers"]
    assert (
        sum(t["max_workers"] for k, t in types.items() if k != prepared["head_node_type"])
        >= (prepared["max_workers"])
    )


def test_setup_installs_medcrypt_with_pinned_gpu_torch(config: dict[str, Any]) -> None:
    prepared = _validate(config)
    worker = " ; ".join(prepared["worker_setup_commands"])
    head = " ; ".join(prepared["head_setup_commands"])
    assert re.search(
        r'torch==2\.13\.0" --index-url https://download\.pytorch\.org/whl/cu\d+', worker
    )
    assert worker.index("torch==2.13.0") < worker.index("pip install ~/medcrypt")
    assert "pip install ~/medcrypt" in head and "whl/cpu" in head
    assert config["file_mounts"] == {"~/medcrypt": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    # ray[default] (dashboard, Jobs API) on every node, and token auth for every `ray start`
    assert worker.count("pip install ~/medcrypt'[cluster]'") == 1
    assert "pip install ~/medcrypt'[cluster]'" in head
    starts = [*prepared["head_start_ray_commands"], *prepared["worker_start_ray_commands"]]
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)


def test_no_credentials_only_an_instance_profile_placeholder(config: dict[str, Any]) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # access key ids
    assert not re.search(r"(?i)aws_(secret_)?access_key|secret_access|session_token", text)
    for node_type in config["available_node_types"].values():
        arn = node_type["node_config"]["IamInstanceProfile"]["Arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/REPLACE-[\w-]+", arn)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unknown_head_type", "must be one of `available_node_types`"),
        ("min_workers_above_max", "smaller than the sum of `min_workers`"),
        ("gpu_count_not_integer", "'four' is not of type 'integer'"),
        ("unknown_top_level_field", "'aws_secret_access_key' was unexpected"),
        ("missing_node_config", "'node_config' is a required property"),
    ],
)
def test_ray_rejects_a_broken_config(config: dict[str, Any], breakage: str, message: str) -> None:
    import jsonschema

    broken = copy.deepcopy(config)
    if breakage == "unknown_head_type":
        broken["head_node_type"] = "no_such_type"
    elif breakage == "min_workers_above_max":
        broken["available_node_types"]["gpu_4x_a10g"]["min_workers"] = broken["max_workers"] + 1
    elif breakage == "gpu_count_not_integer":
        broken["available_node_types"]["gpu_4x_a10g"]["resources"]["GPU"] = "four"
    elif breakage == "unknown_top_level_field":
        broken["aws_secret_access_key"] = "x"
    else:
        del broken["available_node_types"]["gpu_8x_a100"]["node_config"]
    with pytest.raises((jsonschema.ValidationError, ValueError)) as err:
        _validate(broken)
    assert message in str(err.value)
