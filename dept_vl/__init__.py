"""dept-vl: Decomposed Prompt Tuning (DePT) for frozen vision-language models.

Public API::

    from dept_vl import DePT, DePTConfig, attach_dept        # the method, on any inputs_embeds  (dept_vl.methods)
    from dept_vl import ADePT, register_method, list_methods # the other methods, and the registry of them
    from dept_vl import VisionLanguageModel, ModelConfig     # frozen vision encoder + text backbone + DePT
    from dept_vl import param_groups, budget_pairs           # two learning rates; budget parity

The folders: ``methods/`` (DePT and the other methods, alone), ``models/`` (the vision-language model around
them), ``data/`` (tasks, metrics, feature cache, batches), ``runs/`` (recipes and run directories), ``inference/``
(prediction and evaluation), ``training/`` (the loop), ``serve/``, ``bench/``.
"""

from . import _moved
from . import peft as _peft  # noqa: F401  (registers DEPT and ADEPT with PEFT)
from ._version import __version__
from .errors import CheckpointError, ConfigError, DeptVLError, InputError
from .methods import (ADePT, ADePTSettings, Budget, BudgetPair, DePT, DePTConfig, DePTWrapper, LoraSettings, Method,
                      MethodContext, attach_dept, budget_pairs, count_parameters, get_method, list_methods,
                      param_groups, position_ids_from_mask, rank_for, register_method)
from .models import (ModelConfig, TextBackbone, TextConfig, VisionConfig, VisionEncoder, VisionLanguageModel,
                     VisualProjection, build_vision_encoder, create_vision_encoder, list_model_configs,
                     list_vision_encoders, register_vision_encoder)

_moved.install()

__all__ = [
    "ADePT", "ADePTSettings", "Budget", "BudgetPair", "CheckpointError", "ConfigError", "DePT", "DePTConfig",
    "DePTWrapper", "DeptVLError", "InputError", "LoraSettings", "Method", "MethodContext", "ModelConfig",
    "TextBackbone", "TextConfig", "VisionConfig", "VisionEncoder", "VisionLanguageModel", "VisualProjection",
    "__version__", "attach_dept", "budget_pairs", "build_vision_encoder", "count_parameters", "create_vision_encoder",
    "get_method", "list_methods", "list_model_configs", "list_vision_encoders", "param_groups",
    "position_ids_from_mask", "rank_for", "register_method", "register_vision_encoder",
]
