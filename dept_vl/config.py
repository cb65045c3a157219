"""Model configuration: vision encoder + text backbone + DePT, as small JSON/YAML files (open_clip style).

Named architectures live in ``dept_vl/model_configs/<name>.json``; ``ModelConfig.from_name`` reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ._dataclass import from_dict
from .dept_config import DePTConfig
from .errors import ConfigError

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
FEATURES = "features"  # encoder name meaning "images arrive as precomputed features"
RANDOM = "random"  # text backbone name meaning "a random T5 built for the task" (RandomTextConfig)
METHODS = ("dept", "pt", "lora", "full")


@dataclass
class VisionConfig:
    encoder: str = "efficientnet-lite0"  # registered name, timm:<name>, HF name/path, or "features"
    image_size: int | None = None  # input resolution; None = the encoder's default
    pool_tokens: int | None = None  # average-pool the patch grid to this many tokens (a square)
    pretrained: bool = True
    feature_dim: int | None = None  # width of precomputed features (encoder == "features")
    num_tokens: int | None = None  # tokens per image of precomputed features (encoder == "features")

    def __post_init__(self) -> None:
        if self.encoder == FEATURES and not (self.feature_dim and self.num_tokens):
            raise ConfigError("vision.encoder='features' needs vision.feature_dim and vision.num_tokens")
        for name in ("image_size", "pool_tokens", "feature_dim", "num_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"vision.{name} must be a positive integer, got {value!r}")


@dataclass
class RandomTextConfig:
    """A randomly initialised T5 with a word-level tokenizer built from the task's text (``backbone: random``).

    For offline runs where no pretrained text model can be had; ``dept-vl train`` builds and saves it.
    """

    d_model: int = 128
    d_ff: int = 256
    num_layers: int = 2
    num_heads: int = 4
    seed: int = 0


@dataclass
class TextConfig:
    backbone: str = "t5-base"  # any AutoModelForSeq2SeqLM / AutoModelForCausalLM name or path, or "random"
    tokenizer: str | None = None  # default: the backbone's own
    max_length: int = 40  # text tokens per example (question + task prefix)
    max_target_length: int = 16
    dtype: str | None = None  # float32 | bfloat16 | float16 for the frozen weights
    random: RandomTextConfig | None = None  # the shape of the random backbone when backbone == "random"

    def __post_init__(self) -> None:
        if self.backbone == RANDOM and self.random is None:
            self.random = RandomTextConfig()
        for name in ("max_length", "max_target_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"text.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ConfigError(f"text.dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


@dataclass
class LoraSettings:
    """The LoRA baseline (``method: lora``), applied to the frozen text backbone through ``peft``."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # default: peft's choice for the architecture (T5: q, v)

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"lora.r must be a positive integer, got {self.r!r}")


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    dept: DePTConfig = field(default_factory=DePTConfig)
    max_images: int = 1  # images per example (NLVR2: 2)
    method: str = "dept"  # dept | pt (vanilla prompt tuning, same budget) | lora (peft) | full (fine-tuning)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.max_images, int) or self.max_images < 1:
            raise ConfigError(f"max_images must be a positive integer, got {self.max_images!r}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_dict(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        """Read a ``.json`` or ``.yaml`` model config."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model config not found: {path}")
        try:
            data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot parse {path}: {err}") from None
        return cls.from_dict(data or {})

    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        """A named architecture from ``dept_vl/model_configs`` (see ``list_model_configs()``)."""
        path = MODEL_CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"unknown model config {name!r}; known: {', '.join(list_model_configs())}")
        return cls.from_file(path)


def list_model_configs() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
