"""dept-vl: Decomposed Prompt Tuning (DePT) for frozen vision-language models.

Public API::

    from dept_vl import DePT, DePTConfig, attach_dept        # the method, on any inputs_embeds  (dept_vl.method)
    from dept_vl import VisionLanguageModel, ModelConfig     # frozen vision encoder + text backbone + DePT
    from dept_vl import param_groups, budget_pairs           # two learning rates; budget parity

The folders: ``method/`` (DePT alone), ``models/`` (the vision-language model around it), ``data/`` (tasks,
metrics, feature cache, batches), ``training/`` (recipes, runs, the loop, evaluation, prediction), ``bench/``.
"""

from . import _moved
from ._version import __version__
from .errors import CheckpointError, ConfigError, DeptVLError, InputError
from .method import (BudgetPair, DePT, DePTConfig, DePTWrapper, attach_dept, budget_pairs, count_parameters,
                     param_groups, position_ids_from_mask, rank_for)
from .models import (ModelConfig, TextBackbone, TextConfig, VisionConfig, VisionEncoder, VisionLanguageModel,
                     VisualProjection, build_vision_encoder, list_methods, list_model_configs, list_vision_encoders,
                     register_method, register_vision_encoder)

_moved.install()

__all__ = [
    "BudgetPair", "CheckpointError", "ConfigError", "DePT", "DePTConfig", "DePTWrapper", "DeptVLError", "InputError",
    "ModelConfig", "TextBackbone", "TextConfig", "VisionConfig", "VisionEncoder", "VisionLanguageModel",
    "VisualProjection", "__version__", "attach_dept", "budget_pairs", "build_vision_encoder", "count_parameters",
    "list_methods", "list_model_configs", "list_vision_encoders", "param_groups", "position_ids_from_mask",
    "rank_for", "register_method", "register_vision_encoder",
]
