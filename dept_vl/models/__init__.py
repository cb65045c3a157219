"""The frozen vision-language model around DePT: vision encoders, the trainable projection, text backbones, the
model configs, the one name parser, and ``VisionLanguageModel``, where ``[visual ; text] -> DePT -> backbone`` is
assembled. (The methods that train on it are ``dept_vl.methods``.)"""

from ..methods import LoraSettings  # noqa: F401  (its home was models.config in dept-vl 0.1)
from .config import ModelConfig, RandomTextConfig, TextConfig, VisionConfig, list_model_configs
from .factory import create_model, load_model
from .interface import Member, VLModel
from .names import ModelName, parse_model_name
from .native_vlm import NativeVisionLanguageModel
from .projection import VisualProjection
from .text import TextBackbone
from .vision import (VisionEncoder, build_vision_encoder, create_vision_encoder, list_vision_encoders,
                     register_vision_encoder)
from .vl_model import VisionLanguageModel

__all__ = ["Member", "VLModel", "ModelConfig", "ModelName", "NativeVisionLanguageModel", "RandomTextConfig", "TextBackbone", "TextConfig", "VisionConfig",
           "VisionEncoder", "VisionLanguageModel", "VisualProjection", "build_vision_encoder", "create_vision_encoder",
           "create_model", "list_model_configs", "list_vision_encoders", "load_model", "parse_model_name",
           "register_vision_encoder"]
