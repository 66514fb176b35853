"""The one release policy: what a released file may say about the key, and the job's PGD."""

from __future__ import annotations

import json

import pytest

from medcrypt.errors import ConfigError
from medcrypt.processing import (
    EncryptionKey,
    PGDSettings,
    ReleaseError,
    check_release,
    key_release,
    release_json,
    settings_from_key,
)

KEY_PGD = PGDSettings(eps=1.0, step=0.2, iters=20)


def test_key_release_carries_fingerprint_and_pgd_only() -> None:
    key = EncryptionKey.generate(["a", "b", "c"], combiner="mixup", seed=5, pgd=KEY_PGD)
    out = key_release(key.fingerprint, key.pgd)
    assert set(out) == {"key_fingerprint", "pgd"}
    assert out["pgd"] == KEY_PGD.model_dump(mode="json")
    text = json.dumps(out)
    assert key.secret.get_secret_value() not in text and "mixup" not in text
    over = key_release(key.fingerprint, key.pgd, overrides={"eps": {"key": 1.0, "job": 2.0}})
    assert over["pgd_overrides"] == {"eps": {"key": 1.0, "job": 2.0}}


@pytest.mark.parametrize("field", ["combiner", "combiner_params", "targets", "secret"])
def test_a_document_naming_a_key_secret_is_refused_at_any_depth(field: str) -> None:
    with pytest.raises(ReleaseError, match=repr(field)):
        check_release({"metrics": [{"l2": 1.0, field: "x"}]}, where="record of case c1")
    check_release({"n_targets": 2, "target_success": 0.5, "seed": 3}, where="fine")


def test_release_json_refuses_a_forbidden_value() -> None:
    assert json.loads(release_json({"a": "fine"}, where="x")) == {"a": "fine"}
    with pytest.raises(ReleaseError, match="secret value"):
        release_json({"note": "abc-SECRET-def"}, where="x", forbidden_text=["SECRET"])


def test_the_keys_pgd_settings_rule_unless_overridden_explicitly() -> None:
    # nothing asked: the key's settings, no overrides
    assert settings_from_key(KEY_PGD, {}) == (KEY_PGD, {})
    # repeating the key's values, or choosing how to compute, is no override
    same, over = settings_from_key(KEY_PGD, {"eps": 1.0, "precision": "fp32", "iters": None})
    assert same == KEY_PGD.model_copy(update={"precision": "fp32"}) and over == {}
    # a contradicting protection setting is refused, naming the flag, both values, the way out
    with pytest.raises(ConfigError) as err:
        settings_from_key(KEY_PGD, {"eps": 2.0, "iters": 20})
    text = str(err.value)
    assert "--pgd-eps (pgd.eps) is 2.0, the key's is 1.0" in text
    assert "--pgd-iters" not in text and "--override-key-pgd" in text
    # ... or applied when asked, and reported
    got, over = settings_from_key(KEY_PGD, {"eps": 2.0, "best_iterate": False}, override=True)
    assert (got.eps, got.best_iterate, got.iters) == (2.0, False, 20)
    assert over == {"eps": {"key": 1.0, "job": 2.0}, "best_iterate": {"key": True, "job": False}}
