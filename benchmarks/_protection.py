"""Per-architecture scores of a protection report as one JSON-ready dict (shared by benchmarks).

Imported as ``from _rows import ...``, like ``_timing`` (the benchmarks run as scripts from the
repository root, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

from typing import Any

from medcrypt.processing._evaluation import ProtectionReport


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
