"""medcrypt.processing (see DESIGN.md). Public names are re-exported here with __all__."""

from __future__ import annotations

__all__: list[str] = []
