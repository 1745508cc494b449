"""Max-min fair sharing of a whole number of things (pilots, launches)."""

from __future__ import annotations

from collections.abc import Mapping


def fair_share(wants: Mapping[str, int], budget: int) -> dict[str, int]:
    """Split `budget` so nobody gets more than it wants and small wants are met
    in full before big ones get more (max-min fairness, water filling)."""
    shares = dict.fromkeys(wants, 0)
    left = max(budget, 0)
    open_keys = sorted((k for k, v in wants.items() if v > 0), key=lambda k: (wants[k], k))
    for i, key in enumerate(open_keys):
        shares[key] = min(wants[key], left // (len(open_keys) - i))
        left -= shares[key]
    return shares
