"""The frozen vision-language model around DePT: vision encoders, the trainable projection, text backbones, the
training methods, the model configs, and ``VisionLanguageModel``, where ``[visual ; text] -> DePT -> backbone``
is assembled."""

from .config import LoraSettings, ModelConfig, RandomTextConfig, TextConfig, VisionConfig, list_model_configs
from .methods import Method, get_method, list_methods, register_method
from .projection import VisualProjection
from .text import TextBackbone
from .vision import VisionEncoder, build_vision_encoder, list_vision_encoders, register_vision_encoder
from .vl_model import VisionLanguageModel

__all__ = ["LoraSettings", "Method", "ModelConfig", "RandomTextConfig", "TextBackbone", "TextConfig",
           "VisionConfig", "VisionEncoder", "VisionLanguageModel", "VisualProjection", "build_vision_encoder",
           "get_method", "list_methods", "list_model_configs", "list_vision_encoders", "register_method",
           "register_vision_encoder"]
