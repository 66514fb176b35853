"""medcrypt.medical (see DESIGN.md). Public names are re-exported here with __all__."""

from __future__ import annotations

from medcrypt.medical._phantoms import CLASS_NAMES, make_phantom_slices, make_phantom_volume

__all__: list[str] = []

__all__ += ["CLASS_NAMES", "make_phantom_slices", "make_phantom_volume"]
