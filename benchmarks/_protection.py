"""What the protection benchmarks share: the budget-list option.

Imported as ``from _protection import ...``, like ``_timing`` (the benchmarks run as scripts from
the repository root, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse


def eps_list(text: str) -> tuple[float, ...]:
    """``--eps`` as a comma list of positive L2 budgets (an argparse ``type``)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        msg = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive budgets, got {text!r}")
    return values
