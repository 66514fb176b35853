"""Attacker audit: key recovery by enumeration (paper Sections 3.4 and 4.3).

The attacker knows the method (targeted L2 PGD + a combiner) but not the key. They hold the
released (encrypted) training set and some labelled original data of their own. They:

1. train a model ``M1`` on the encrypted set (it learnt the planted features);
2. train a model ``M2`` on their own labelled data;
3. for one source class ``c`` at a time, for every candidate target tuple (ordered, no fixed
   point, the key's length), re-encrypt their class-``c`` images with ``M2`` under the
   candidate (the combiner and its parameters as guessed) and measure how often ``M1``
   predicts ``c`` on them;
4. pick, per class, the candidate with the highest accuracy.

The audit reports, per class, the ranking and whether the true target tuple came first, and
the share of classes whose targets were recovered. A key whose correspondence is found for
most classes offers little secrecy beyond the perturbation itself.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
from pydantic import Field
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._training import evaluate_accuracy
from medcrypt.processing.protection._encrypt import Encryptor
from medcrypt.processing.protection._keys import EncryptionKey
from medcrypt.processing.protection._settings import PGDSettings

__all__ = ["CandidateScore", "ClassRecovery", "KeyRecoveryAudit", "audit_key_recovery"]

logger = logging.getLogger(__name__)


class CandidateScore(StrictModel):
    """How well ``M1`` recognises class-c data re-encrypted under one guessed target tuple."""

    targets: tuple[int, ...]
    accuracy: float


class ClassRecovery(StrictModel):
    """The attacker's search for one source class."""

    source: int
    true_targets: tuple[int, ...]
    best_targets: tuple[int, ...]
    recovered: bool
    #: rank of the true targets among the candidates (1 = best; ties rank pessimistically).
    true_rank: int
    candidates: tuple[CandidateScore, ...]


class KeyRecoveryAudit(StrictModel):
    """Result of :func:`audit_key_recovery` (JSON-safe; names the key by fingerprint only)."""

    key_fingerprint: str
    combiner: str
    n_candidates_per_class: int
    n_images_per_class: int
    recovery_rate: float = Field(ge=0.0, le=1.0)
    classes: tuple[ClassRecovery, ...]


def _candidates(source: int, n_classes: int, k: int, allow_fixed: bool) -> list[tuple[int, ...]]:
    pool = [t for t in range(n_classes) if allow_fixed or t != source]
    return [tuple(p) for p in itertools.permutations(pool, k)]


def audit_key_recovery(
    encrypted_model: nn.Module,
    attacker_model: nn.Module,
    key: EncryptionKey,
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    classes: Sequence[int] | None = None,
    pgd: PGDSettings | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> KeyRecoveryAudit:
    """Simulate the enumeration attack against ``key`` and report how often it succeeds.

    The attacker is granted the combiner and its per-class parameters (the paper's Table 8
    assumption: "the encryption uses 50% and 50% composition ratio" known), so only the
    target correspondence is searched. That is the most favourable case for the attacker.

    Args:
        encrypted_model: ``M1``, trained on the released (encrypted) training set.
        attacker_model: ``M2``, trained by the attacker on their own labelled originals.
        key: the true key (used to score the search, and for its combiner and parameters).
        images, labels: the attacker's labelled originals, (N, H, W) float32 in [0, 1].
        classes: source classes to attack (default: all with at least one image).
        pgd: PGD settings the attacker uses (default: the key's).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: ``progress(done, total, "class c")`` over candidate evaluations.

    Raises:
        ConfigError: no image of a requested class.
    """
    x = np.asarray(images, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    n = key.num_classes
    dev = resolve_device(device)
    wanted = list(classes) if classes is not None else sorted(set(y.tolist()))
    per_class = {c: np.flatnonzero(y == c) for c in wanted}
    empty = [c for c, idx in per_class.items() if idx.size == 0]
    if empty:
        raise ConfigError(f"no attacker image of class(es) {empty}", field="classes")
    plans = {c: _candidates(c, n, len(key.targets[c]), key.allow_fixed_points) for c in wanted}
    total = sum(len(p) for p in plans.values())
    done = 0
    results = []
    for c in wanted:
        idx = per_class[c]
        scores = []
        for cand in plans[c]:
            guess_targets = list(key.targets)
            guess_targets[c] = cand
            guess = key.model_copy(update={"targets": tuple(guess_targets)})
            enc = Encryptor(attacker_model, guess, device=dev, settings=pgd or key.pgd)
            released = enc.encrypt(x[idx], np.full(idx.size, c)).images
            acc = evaluate_accuracy(encrypted_model, released, np.full(idx.size, c), device=dev)
            scores.append(CandidateScore(targets=cand, accuracy=acc))
            done += 1
            if progress is not None:
                progress(done, total, f"class {c}")
        best = max(scores, key=lambda s: s.accuracy)
        true = tuple(key.targets[c])
        true_acc = next(s.accuracy for s in scores if s.targets == true)
        rank = sum(1 for s in scores if s.accuracy >= true_acc)
        recovered = rank == 1
        logger.info(
            "class %d: best %s (%.3f), true %s (%.3f, rank %d)",
            c,
            best.targets,
            best.accuracy,
            true,
            true_acc,
            rank,
        )
        results.append(
            ClassRecovery(
                source=c,
                true_targets=true,
                best_targets=best.targets if not recovered else true,
                recovered=recovered,
                true_rank=rank,
                candidates=tuple(scores),
            )
        )
    return KeyRecoveryAudit(
        key_fingerprint=key.fingerprint,
        combiner=key.combiner,
        n_candidates_per_class=max(len(p) for p in plans.values()),
        n_images_per_class=int(min(i.size for i in per_class.values())),
        recovery_rate=sum(r.recovered for r in results) / len(results),
        classes=tuple(results),
    )
