"""Key-recovery audit: candidate enumeration, ranking and the recovery rate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from medcrypt.errors import ConfigError
from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import PGDSettings, TrainSettings, build_model, train_model
from medcrypt.processing.assessment._audit import KeyRecoveryAudit, audit_key_recovery
from medcrypt.processing.assessment._evaluation import paper_key


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[torch.nn.Module, torch.nn.Module, np.ndarray, np.ndarray]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = make_phantom_slices(3, size=32, seed=9)
    m1 = build_model("resnet18", 5, width=4, seed=1)
    m2 = build_model("resnet18", 5, width=4, seed=2)
    for m in (m1, m2):
        train_model(m, x, y, seed=0, settings=TrainSettings(epochs=1), device="cpu")
    yield m1, m2, x, y
    torch.set_num_threads(threads)


@pytest.mark.timeout(180)
def test_audit_enumerates_every_ordered_pair_and_ranks_the_true_one(models) -> None:  # type: ignore[no-untyped-def]
    m1, m2, x, y = models
    key = paper_key(CLASS_NAMES, seed=0, pgd=PGDSettings(eps=0.5, step=0.1, iters=2))
    calls: list[int] = []
    audit = audit_key_recovery(
        m1, m2, key, x, y, classes=[0, 3], device="cpu", progress=lambda d, t, w: calls.append(d)
    )
    assert [c.source for c in audit.classes] == [0, 3]
    assert audit.n_candidates_per_class == 12  # ordered pairs of the 4 other classes
    assert audit.n_images_per_class == 3
    assert calls == list(range(1, 25))
    for c in audit.classes:
        cands = [s.targets for s in c.candidates]
        assert len(set(cands)) == 12 and c.true_targets in cands
        assert all(c.source not in t for t in cands)  # no fixed points guessed
        assert all(0.0 <= s.accuracy <= 1.0 for s in c.candidates)
        best = max(s.accuracy for s in c.candidates)
        true_acc = next(s.accuracy for s in c.candidates if s.targets == c.true_targets)
        assert c.recovered == (true_acc == best and c.true_rank == 1)
        assert 1 <= c.true_rank <= 12
    assert audit.recovery_rate == sum(c.recovered for c in audit.classes) / 2
    # JSON-safe and names the key only by fingerprint
    text = audit.model_dump_json()
    assert key.secret.get_secret_value() not in text
    assert KeyRecoveryAudit.model_validate_json(text) == audit


def test_audit_refuses_a_class_without_images(models) -> None:  # type: ignore[no-untyped-def]
    m1, m2, x, y = models
    key = paper_key(CLASS_NAMES, seed=0)
    keep = y != 4
    with pytest.raises(ConfigError, match="no attacker image"):
        audit_key_recovery(m1, m2, key, x[keep], y[keep], classes=[4], device="cpu")
