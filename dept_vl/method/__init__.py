"""DePT itself, on any model that takes ``inputs_embeds``: its config, the module (with its checkpoint
format), budget parity with vanilla prompt tuning, the two-learning-rate parameter groups, and ``attach_dept``.
Nothing here knows about images or the vision-language model."""

from .attach import DePTWrapper, attach_dept
from .budget import BudgetPair, budget_pairs, rank_for
from .config import DePTConfig
from .dept import DePT, position_ids_from_mask
from .param_groups import count_parameters, param_groups

__all__ = ["BudgetPair", "DePT", "DePTConfig", "DePTWrapper", "attach_dept", "budget_pairs", "count_parameters",
           "param_groups", "position_ids_from_mask", "rank_for"]
