"""Parameter-budget parity between vanilla prompt tuning (m tokens) and DePT (l tokens + rank r).

``Budget`` is the common currency of the methods' budget rules (``Method.at_budget``): a number of trainable
parameters, and the shape that the settings matching it are computed for.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._dataclass import check_int
from ..errors import ConfigError


@dataclass(frozen=True)
class BudgetPair:
    prompt_length: int  # l
    r: int
    params: int  # l*d + s*r + r*d
    budget: int  # m*d


@dataclass(frozen=True)
class Budget:
    """``params`` trainable parameters for a backbone of width ``hidden_size`` and inputs of up to ``max_length``
    tokens, spent with prompts of ``prompt_length`` tokens (``num_prompts`` of them: one per task); ``backbone``: the
    frozen model, for methods whose size depends on its layers (LoRA)."""

    params: int
    hidden_size: int
    max_length: int
    prompt_length: int
    num_prompts: int = 1
    backbone: nn.Module | None = None

    @classmethod
    def of(cls, dept, hidden_size: int, backbone: nn.Module | None = None) -> "Budget":
        """The budget of the DePT configuration ``dept`` at width ``hidden_size``."""
        return cls(dept.num_parameters(hidden_size), hidden_size, dept.max_length, dept.prompt_length,
                   dept.num_prompts, backbone)

    @property
    def left_after_prompts(self) -> int:
        """What is left for the input update once the prompts are paid for."""
        return self.params - self.num_prompts * self.prompt_length * self.hidden_size


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
