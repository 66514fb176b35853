"""A key's secret targets and combiner parameters, drawn from its seed (``generate``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing.protection._combiners import (
    COMBINERS,
    default_target_count,
    random_params,
    validate_combiner,
)

__all__ = ["draw_targets"]


def draw_targets(
    names: tuple[str, ...],
    combiner: str,
    seed: int,
    targets_per_class: int | Sequence[int] | None,
    allow_fixed_points: bool,
) -> tuple[list[tuple[int, ...]], list[tuple[float, ...]]]:
    """Per class, distinct random targets and the combiner's random parameters, from ``seed``.

    Raises:
        EncryptionKeyError: unknown combiner, or an impossible request (more targets than
            classes to draw from, a count per class that does not match the classes).
    """
    n = len(names)
    if combiner not in COMBINERS:
        raise EncryptionKeyError(
            f"unknown combiner {combiner!r}; expected one of {', '.join(COMBINERS)}"
        )
    if targets_per_class is None:
        counts = [default_target_count(combiner)] * n
    elif isinstance(targets_per_class, int):
        counts = [targets_per_class] * n
    else:
        counts = [int(c) for c in targets_per_class]
        if len(counts) != n:
            raise EncryptionKeyError(
                f"targets_per_class has {len(counts)} entries but there are {n} classes"
            )
    rng = np.random.default_rng(seed)
    targets: list[tuple[int, ...]] = []
    params: list[tuple[float, ...]] = []
    for y, k in enumerate(counts):
        pool = [t for t in range(n) if allow_fixed_points or t != y]
        if not 1 <= k <= len(pool):
            raise EncryptionKeyError(
                f"class {names[y]!r}: asked for {k} distinct targets but only {len(pool)} "
                f"{'classes exist' if allow_fixed_points else 'other classes exist'}"
            )
        targets.append(tuple(int(t) for t in rng.choice(pool, size=k, replace=False)))
        try:
            validate_combiner(combiner, k, random_params(combiner, k, np.random.default_rng(0)))
        except ValueError as exc:
            raise EncryptionKeyError(f"class {names[y]!r}: {exc}") from exc
        params.append(random_params(combiner, k, rng))
    return targets, params
