from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing import COMBINERS, EncryptionKey, PGDSettings

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("meningioma", "chordoma", "schwannoma", "pituitary_adenoma", "craniopharyngioma")


def test_round_trip_owner_only_and_stable_fingerprint(tmp_path: Path) -> None:
    key = EncryptionKey.generate(NAMES, combiner="concat", seed=7, pgd=PGDSettings(eps=1.5))
    path = key.save(tmp_path / "key.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = EncryptionKey.load(path)
    assert loaded == key
    assert loaded.fingerprint == key.fingerprint
    assert loaded.secret.get_secret_value() == key.secret.get_secret_value()
    assert key.fingerprint.startswith("mk1:") and len(key.fingerprint) == 20
    assert [o for o in os.listdir(tmp_path) if o != "key.json"] == []  # no temp file left


def test_save_is_owner_only_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = EncryptionKey.generate(NAMES, combiner="mixup", seed=1).save(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    key = EncryptionKey.generate(NAMES, combiner="concat", seed=1)
    key.save(tmp_path / "k.json")
    with pytest.raises(EncryptionKeyError, match="already exists"):
        key.save(tmp_path / "k.json")
    key.save(tmp_path / "k.json", overwrite=True)


def test_secret_never_shown() -> None:
    key = EncryptionKey.generate(NAMES, combiner="concat", seed=1)
    secret = key.secret.get_secret_value()
    assert secret not in repr(key) and secret not in str(key)
    assert secret not in key.model_dump_json()
    assert secret not in key.fingerprint
    assert secret in key.to_json()


def test_fingerprint_depends_on_secret_and_content() -> None:
    a = EncryptionKey.generate(NAMES, combiner="concat", seed=1, secret="a" * 64)
    b = EncryptionKey.generate(NAMES, combiner="concat", seed=1, secret="a" * 64)
    c = EncryptionKey.generate(NAMES, combiner="concat", seed=1, secret="b" * 64)
    d = EncryptionKey.generate(NAMES, combiner="concat", seed=2, secret="a" * 64)
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3


def test_same_seed_same_targets_and_params() -> None:
    a = EncryptionKey.generate(NAMES, combiner="mixup_concat", seed=11)
    b = EncryptionKey.generate(NAMES, combiner="mixup_concat", seed=11)
    c = EncryptionKey.generate(NAMES, combiner="mixup_concat", seed=12)
    assert (a.targets, a.combiner_params) == (b.targets, b.combiner_params)
    assert (a.targets, a.combiner_params) != (c.targets, c.combiner_params)
    assert a.secret != b.secret  # fresh randomness unless given


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 12),
    seed=st.integers(0, 2**32 - 1),
    combiner=st.sampled_from([c for c in COMBINERS if c != "mixup_concat"]),
)
def test_no_fixed_points_and_distinct_targets(n: int, seed: int, combiner: str) -> None:
    key = EncryptionKey.generate([f"c{i}" for i in range(n)], combiner=combiner, seed=seed)
    for y, targets in enumerate(key.targets):
        assert y not in targets
        assert len(set(targets)) == len(targets)
        assert all(0 <= t < n for t in targets)


def test_fixed_points_only_when_asked() -> None:
    keys = [
        EncryptionKey.generate(["a", "b"], combiner="none", seed=s, allow_fixed_points=True)
        for s in range(20)
    ]
    assert any(y in k.targets[y] for k in keys for y in range(2))
    with pytest.raises(EncryptionKeyError, match="only 1 other classes exist"):
        EncryptionKey.generate(["a", "b"], combiner="concat", seed=0)


def test_targets_per_class_may_vary() -> None:
    key = EncryptionKey.generate(
        NAMES, combiner="concat", seed=3, targets_per_class=[2, 3, 4, 2, 3]
    )
    assert [len(t) for t in key.targets] == [2, 3, 4, 2, 3]
    assert [len(p) for p in key.combiner_params] == [1, 2, 3, 1, 2]
    with pytest.raises(EncryptionKeyError, match="4 targets"):
        EncryptionKey.generate(NAMES, combiner="mixup_concat", seed=3, targets_per_class=2)


def test_check_model_refuses_a_wrong_pairing() -> None:
    key = EncryptionKey.generate(NAMES, combiner="concat", seed=1)
    key.check_model(5)
    with pytest.raises(EncryptionKeyError, match="key has 5 classes, model has 3"):
        key.check_model(3)
    with pytest.raises(EncryptionKeyError, match="differ from model classes"):
        key.check_model(5, tuple(reversed(NAMES)))


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_load_validates_and_names_the_file(tmp_path: Path) -> None:
    good = json.loads(EncryptionKey.generate(NAMES, combiner="concat", seed=1).to_json())
    secret = good["secret"]
    out_of_range = {**good, "targets": [[1, 2], [2, 3], [3, 4], [4, 9], [0, 1]]}
    with pytest.raises(EncryptionKeyError, match=r"targets \[9\] out of range\(5\)") as info:
        EncryptionKey.load(_write(tmp_path, out_of_range))
    assert "bad.json" in str(info.value)
    assert secret not in str(info.value)
    fixed = {**good, "targets": [[0, 2], [2, 3], [3, 4], [4, 1], [0, 1]]}
    with pytest.raises(EncryptionKeyError, match="fixed point"):
        EncryptionKey.load(_write(tmp_path, fixed))
    short = {**good, "targets": good["targets"][:3]}
    with pytest.raises(EncryptionKeyError, match="each of the 5 classes"):
        EncryptionKey.load(_write(tmp_path, short))
    with pytest.raises(EncryptionKeyError, match="not valid JSON"):
        EncryptionKey.load(_write(tmp_path, "{nope"))
    with pytest.raises(EncryptionKeyError, match="format 'medcrypt-key'"):
        EncryptionKey.load(_write(tmp_path, {"hello": 1}))
    weak = {**good, "secret": "abc"}
    with pytest.raises(EncryptionKeyError, match="secret") as info:
        EncryptionKey.load(_write(tmp_path, weak))
    assert "abc" not in str(info.value).replace("bad.json", "")
    with pytest.raises(EncryptionKeyError, match="not found"):
        EncryptionKey.load(tmp_path / "missing.json")


def test_from_targets_uses_the_given_correspondence(tmp_path: Path) -> None:
    paper = [(1, 3), (2, 4), (3, 0), (4, 1), (0, 2)]  # the paper's MRI correspondence (Sec. 5)
    key = EncryptionKey.from_targets(NAMES, paper, combiner="concat", seed=0)
    assert key.targets == tuple(paper)
    assert EncryptionKey.load(key.save(tmp_path / "k.json")) == key
    with pytest.raises(EncryptionKeyError, match="fixed point"):
        EncryptionKey.from_targets(NAMES, [(0, 3), *paper[1:]], combiner="concat", seed=0)
    with pytest.raises(EncryptionKeyError, match=r"out of range\(5\)"):
        EncryptionKey.from_targets(NAMES, [(1, 5), *paper[1:]], combiner="concat", seed=0)


# A key file written by the code before protection modes (version 1, commit d641c11), with
# a test secret; its fingerprint then was mk1:abba0ebf89672ff8.
_V1_KEY = """{
  "allow_fixed_points": false,
  "class_names": ["a", "b", "c"],
  "combiner": "concat",
  "combiner_params": [[0.33426], [0.394724], [0.62051]],
  "format": "medcrypt-key",
  "pgd": {"best_iterate": true, "channels_last": null, "eps": 0.8, "iters": 6,
          "precision": "auto", "step": 0.1},
  "secret": "abababababababababababababababababababababababababababababababab",
  "seed": 3,
  "targets": [[1, 2], [2, 0], [0, 1]],
  "version": 1
}
"""


def test_version_1_key_files_still_load_unchanged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    path = tmp_path / "old.json"
    path.write_text(_V1_KEY)
    path.chmod(0o600)
    key = EncryptionKey.load(path)
    assert key.version == 1
    assert key.fingerprint == "mk1:abba0ebf89672ff8"
    # the paper's plain whole-slice PGD, as the file meant when it was written
    assert (key.pgd.mode, key.pgd.norm, key.pgd.foreground) == ("paper", "l2", False)
    saved = json.loads(key.to_json())
    assert saved["pgd"] == json.loads(_V1_KEY)["pgd"]  # written back without the new fields
    again = tmp_path / "again.json"
    key.save(again)
    assert EncryptionKey.load(again).fingerprint == key.fingerprint
    # a version 1 file cannot claim a mode that did not exist then
    bad = json.loads(_V1_KEY)
    bad["pgd"]["foreground"] = True
    path.write_text(json.dumps(bad))
    with pytest.raises(EncryptionKeyError, match="version 1"):
        EncryptionKey.load(path)


def test_new_keys_record_their_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pgd = PGDSettings(mode="shortcut+poison", norm="linf", eps=0.03, step=0.005)
    key = EncryptionKey.generate(("a", "b", "c"), combiner="none", seed=1, pgd=pgd)
    assert key.version == 2
    loaded = EncryptionKey.load(key.save(tmp_path / "k.json"))
    assert loaded.pgd == pgd and loaded.fingerprint == key.fingerprint
    assert (loaded.pgd.restarts, loaded.pgd.augment, loaded.pgd.foreground) == (4, 1.0, True)
    other = EncryptionKey.generate(
        ("a", "b", "c"),
        combiner="none",
        seed=1,
        pgd=pgd.model_copy(update={"norm": "l2"}),
        secret=key.secret.get_secret_value(),
    )
    assert other.fingerprint != key.fingerprint  # the mode settings are part of the key
