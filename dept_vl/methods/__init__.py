"""The training methods, each on any model that takes ``inputs_embeds``: DePT itself (its config, the module, its
checkpoint format), vanilla prompt tuning, ADePT, LoRA and full fine-tuning, registered by name with their settings,
parameter-group and budget rules (``registry.py``); budget parity, the learning-rate groups, and ``attach_dept``.
Nothing here knows about images or the vision-language model. A new method is one file here plus its import below.
"""

# registration, in --method order: pt, dept (dept.py), adept, lora, full
from . import dept  # noqa: F401, I001
from . import adept  # noqa: F401
from . import lora  # noqa: F401
from . import full  # noqa: F401
from .adept import ADePT, ADePTSettings
from .attach import DePTWrapper, attach_dept, build_input_method, resolved_settings, wrap_input_method
from .budget import Budget, BudgetPair, budget_pairs, rank_for
from .config import DePTConfig
from .dept import DePT, prompt_tuning_config
from .lora import LoraSettings
from .param_groups import count_parameters, param_groups
from .prompt import SoftPrompt, position_ids_from_mask
from .registry import (Method, MethodContext, get_method, list_methods, method_sections, register_method,
                       settings_at_budget)

__all__ = ["ADePT", "ADePTSettings", "Budget", "BudgetPair", "DePT", "DePTConfig", "DePTWrapper", "LoraSettings",
           "Method", "MethodContext", "SoftPrompt", "attach_dept", "budget_pairs", "build_input_method", "count_parameters", "get_method",
           "list_methods", "method_sections", "param_groups", "position_ids_from_mask", "prompt_tuning_config",
           "rank_for", "register_method", "resolved_settings", "settings_at_budget", "wrap_input_method"]
