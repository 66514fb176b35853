"""What the protection benchmarks share: the budget-list option and per-architecture scores.

Imported as ``from _protection import ...``, like ``_timing`` (the benchmarks run as scripts from
the repository root, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
from typing import Any

from medcrypt.processing.assessment._evaluation import ProtectionReport


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


def arch_scores(report: ProtectionReport) -> dict[str, dict[str, Any]]:
    """Final clean / encrypted-test / original-test accuracy, original-test peak and recall."""
    return {
        a.arch: {
            "clean": round(a.clean_final, 3),
            "enc": round(a.encrypted_test_final, 3),
            "orig": round(a.original_test_final, 3),
            "orig_peak": round(a.original_test_peak, 3),
            "recall": [None if v is None else round(v, 3) for v in a.original_test_recall],
        }
        for a in report.results
    }
