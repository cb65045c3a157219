"""dept-vl: Decomposed Prompt Tuning (DePT) for frozen vision-language models.

Public API::

    from dept_vl import DePT, DePTConfig                     # the method, on any inputs_embeds
    from dept_vl import VisionLanguageModel, ModelConfig     # frozen vision encoder + text backbone + DePT
    from dept_vl import param_groups, budget_pairs           # two learning rates; budget parity
"""

__version__ = "0.1.0"

from .budget import BudgetPair, budget_pairs, rank_for
from .config import ModelConfig, TextConfig, VisionConfig, list_model_configs
from .dept import DePT, position_ids_from_mask
from .dept_config import DePTConfig
from .errors import CheckpointError, ConfigError, DeptVLError, InputError
from .wrapper import DePTWrapper, attach_dept
from .model import VisionLanguageModel
from .optim import count_parameters, param_groups
from .projection import VisualProjection
from .text import TextBackbone
from .vision import VisionEncoder, build_vision_encoder, list_vision_encoders, register_vision_encoder

__all__ = [
    "BudgetPair", "CheckpointError", "ConfigError", "DePT", "DePTConfig", "DeptVLError", "InputError",
    "ModelConfig", "TextBackbone", "TextConfig", "VisionConfig", "VisionEncoder", "VisionLanguageModel",
    "DePTWrapper", "VisualProjection", "attach_dept", "budget_pairs", "build_vision_encoder", "count_parameters",
    "list_model_configs", "list_vision_encoders", "param_groups", "position_ids_from_mask", "rank_for",
    "register_vision_encoder",
]
