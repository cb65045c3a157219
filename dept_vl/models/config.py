"""Model configuration: vision encoder + text backbone + DePT, as small JSON/YAML files (open_clip style).

Named architectures live in ``dept_vl/models/configs/<name>.json``; ``ModelConfig.from_name`` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .._dataclass import check_choice, check_int, from_dict, setting
from ..errors import ConfigError
from ..io import read_config
from ..method import DePTConfig
from .methods import get_method

MODEL_CONFIG_DIR = Path(__file__).parent / "configs"
FEATURES = "features"  # encoder name meaning "images arrive as precomputed features"
RANDOM = "random"  # text backbone name meaning "a random T5 built for the task" (RandomTextConfig)
DTYPES = ("float32", "bfloat16", "float16")


def _check_positive(section: str, owner, names: tuple[str, ...], optional: bool = False) -> None:
    for name in names:
        value = getattr(owner, name)
        if not (optional and value is None):
            check_int(f"{section}.{name}", value, 1)


@dataclass
class VisionConfig:
    encoder: str = setting("efficientnet-lite0", "registered name, timm:<name>, HF name/path, or 'features'")
    image_size: int | None = setting(None, "input resolution in pixels; None = the encoder's default")
    pool_tokens: int | None = setting(None, "average-pool the patch grid to this many tokens (a square number)")
    pretrained: bool = setting(True, "load the encoder's pretrained weights")
    feature_dim: int | None = setting(None, "width of precomputed features (encoder: features)")
    num_tokens: int | None = setting(None, "tokens per image of precomputed features (encoder: features)")

    def __post_init__(self) -> None:
        if self.encoder == FEATURES and not (self.feature_dim and self.num_tokens):
            raise ConfigError("vision.encoder='features' needs vision.feature_dim and vision.num_tokens")
        _check_positive("vision", self, ("image_size", "pool_tokens", "feature_dim", "num_tokens"), optional=True)


@dataclass
class RandomTextConfig:
    """A randomly initialised T5 with a word-level tokenizer built from the task's text (``backbone: random``).

    For offline runs where no pretrained text model can be had; ``dept-vl train`` builds and saves it.
    """

    d_model: int = setting(128, "hidden size d")
    d_ff: int = setting(256, "feed-forward width")
    num_layers: int = setting(2, "encoder layers (and as many decoder layers)")
    num_heads: int = setting(4, "attention heads (d_model must be divisible by it)")
    seed: int = setting(0, "seed of the random weights")

    def __post_init__(self) -> None:
        _check_positive("text.random", self, ("d_model", "d_ff", "num_layers", "num_heads"))
        check_int("text.random.seed", self.seed, 0)
        if self.d_model % self.num_heads:
            raise ConfigError(f"text.random.d_model {self.d_model} is not divisible by num_heads {self.num_heads}")


@dataclass
class TextConfig:
    backbone: str = setting("t5-base", "any AutoModelForSeq2SeqLM / AutoModelForCausalLM name or path, "
                            "gguf:FILE (a GGUF causal LM), or 'random'")
    tokenizer: str | None = setting(None, "tokenizer name or path; default: the backbone's own")
    max_length: int = setting(40, "text tokens per example (question + task prefix)")
    max_target_length: int = setting(16, "tokens of a target / generated answer")
    dtype: str | None = setting(None, "float32 | bfloat16 | float16 for the frozen weights (default: as saved)")
    random: RandomTextConfig | None = setting(None, "the shape of the random backbone when backbone is 'random'")
    prompt_template: str = setting("{text}", "how each input text is written for the backbone, in training and "
                                   "generation alike; {text} is the task's input (e.g. a chat turn for an instruct LM)")

    def __post_init__(self) -> None:
        if self.backbone == RANDOM and self.random is None:
            self.random = RandomTextConfig()
        if not isinstance(self.prompt_template, str) or self.prompt_template.count("{text}") != 1:
            raise ConfigError(f"text.prompt_template must hold {{text}} exactly once, got {self.prompt_template!r}")
        _check_positive("text", self, ("max_length", "max_target_length"))
        if self.dtype is not None:
            check_choice("text.dtype", self.dtype, DTYPES)


@dataclass
class LoraSettings:
    """The LoRA baseline (``method: lora``), applied to the frozen text backbone through ``peft``."""

    r: int = setting(8, "LoRA rank")
    alpha: float = setting(16.0, "LoRA alpha (scaling alpha / r)")
    dropout: float = setting(0.0, "dropout on the LoRA input")
    target_modules: list[str] | None = setting(None, "module names to adapt; default: peft's choice (T5: q, v)")

    def __post_init__(self) -> None:
        check_int("lora.r", self.r, 1)


@dataclass
class ModelConfig:
    vision: VisionConfig = setting(factory=VisionConfig, help="the frozen vision encoder")
    text: TextConfig = setting(factory=TextConfig, help="the frozen text backbone")
    dept: DePTConfig = setting(factory=DePTConfig, help="DePT's prompt and low-rank pair")
    max_images: int = setting(1, "images per example (NLVR2: 2)")
    method: str = setting("dept", "what trains: dept | pt (same budget) | lora (peft) | full (fine-tuning)")
    lora: LoraSettings = setting(factory=LoraSettings, help="the LoRA baseline's settings (method: lora)")
    tasks: list[str] = setting(factory=list, help="the tasks the model serves, in order (training fills it in)")
    prompt_per_task: bool = setting(True, "a model of several tasks gives each its own prompt P (A, B and the "
                                    "projection stay shared); false: one prompt for all")

    def __post_init__(self) -> None:
        check_int("max_images", self.max_images, 1)
        get_method(self.method)  # an unknown method is a ConfigError naming the registered ones
        if not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks):
            raise ConfigError(f"tasks must be a list of task names, got {self.tasks!r}")

    @property
    def num_prompts(self) -> int:
        """Prompts a prompt method gives the model: one per task of a multi-task model, else dept.num_prompts."""
        return len(self.tasks) if self.prompt_per_task and len(self.tasks) > 1 else self.dept.num_prompts

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_dict(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        """Read a ``.json`` or ``.yaml`` model config."""
        return cls.from_dict(read_config(path, "model config") or {})

    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        """A named architecture from ``dept_vl/models/configs`` (see ``list_model_configs()``)."""
        path = MODEL_CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"unknown model config {name!r}; known: {', '.join(list_model_configs())}")
        return cls.from_file(path)


def list_model_configs() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
