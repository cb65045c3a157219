"""Parameter-budget parity between vanilla prompt tuning (m tokens) and DePT (l tokens + rank r)."""

from __future__ import annotations

from dataclasses import dataclass

from .._dataclass import check_int
from ..errors import ConfigError


@dataclass(frozen=True)
class BudgetPair:
    prompt_length: int  # l
    r: int
    params: int  # l*d + s*r + r*d
    budget: int  # m*d


def budget_pairs(hidden_size: int, max_length: int, vanilla_length: int, step: int = 1) -> list[BudgetPair]:
    """All (l, r) with l >= 1, r >= 0 and ``l*d + s*r + r*d <= m*d``, taking for each l the largest r.

    ``budget_pairs(768, 256, 100)`` contains (60, 30) and (40, 45), the pairs of the DePT paper.
    Pairs are sorted by l, descending; ``step`` thins the list to every step-th l.
    """
    d, s, m = hidden_size, max_length, vanilla_length
    for name, value in (("hidden_size", d), ("max_length", s), ("vanilla_length", m), ("step", step)):
        check_int(name, value, 1)
    pairs = []
    for l in range(m, 0, -step):
        r = ((m - l) * d) // (s + d)
        pairs.append(BudgetPair(l, r, l * d + s * r + r * d, m * d))
    return pairs


def rank_for(hidden_size: int, max_length: int, vanilla_length: int, prompt_length: int) -> int:
    """The largest r that keeps DePT with ``prompt_length`` tokens within the budget of m vanilla tokens."""
    if not 1 <= prompt_length <= vanilla_length:
        raise ConfigError(f"prompt_length must be in 1..{vanilla_length}, got {prompt_length}")
    return ((vanilla_length - prompt_length) * hidden_size) // (max_length + hidden_size)
