"""Model configuration: vision encoder + text backbone + DePT, as small JSON/YAML files (open_clip style).

Named architectures live in ``dept_vl/models/configs/<name>.json``; ``ModelConfig.from_name`` reads them.
"""

from __future__ import annotations

import dataclasses

from dataclasses import asdict, dataclass
from pathlib import Path

from .._dataclass import check_choice, check_int, from_dict, setting
from ..errors import ConfigError
from ..io import read_config
from ..methods import DePTConfig, get_method, method_sections
from .names import FEATURES, RANDOM

MODEL_CONFIG_DIR = Path(__file__).parent / "configs"
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


NATIVE_TEXT_SETTINGS = ("max_length", "max_target_length", "dtype")  # what a native VLM uses of text:


@dataclass
class ModelConfig:
    vision: VisionConfig = setting(factory=VisionConfig, help="the frozen vision encoder")
    text: TextConfig = setting(factory=TextConfig, help="the frozen text backbone")
    dept: DePTConfig = setting(factory=DePTConfig, help="the prompt (every prompt method) and DePT's low-rank pair")
    max_images: int = setting(1, "images per example (NLVR2: 2)")
    method: str = setting("dept", "what trains: a registered method (dept | pt | adept | lora | full | ...)")
    tasks: list[str] = setting(factory=list, help="the tasks the model serves, in order (training fills it in)")
    prompt_per_task: bool = setting(True, "a model of several tasks gives each its own prompt P (A, B and the "
                                    "projection stay shared); false: one prompt for all")
    vlm: str | None = setting(None, "a native Hugging Face VLM (LLaVA, Qwen2-VL, PaliGemma, Idefics3 / SmolVLM, "
                              "Florence-2, BLIP-2) by hub name or directory, with its processor: the method acts on its "
                              "joint sequence after the image merge; vision: and text.backbone are then unused")
    train_projector: bool = setting(False, "with vlm: also train the VLM's own multimodal projector (at the "
                                    "projection learning rate); the vision tower and language model stay frozen")
    sections: dict = setting(factory=dict, help="the methods' own settings, by section (lora:, adept:); in a file "
                             "each is a key of its own")

    def __post_init__(self) -> None:
        check_int("max_images", self.max_images, 1)
        get_method(self.method)  # an unknown method is a ConfigError naming the registered ones
        if not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks):
            raise ConfigError(f"tasks must be a list of task names, got {self.tasks!r}")
        if self.vlm is not None and (not isinstance(self.vlm, str) or not self.vlm.strip()):
            raise ConfigError(f"vlm must name a vision-language model (a hub name or a directory), got {self.vlm!r}")
        if self.train_projector and self.vlm is None:
            raise ConfigError("train_projector is for a native VLM (vlm: NAME); an assembled model's projection "
                              "always trains")
        known = method_sections()
        for name, value in list(self.sections.items()):
            if name not in known:
                raise ConfigError(f"unknown model config section {name!r}; the methods' sections: {', '.join(known)}")
            if isinstance(value, dict):
                self.sections[name] = from_dict(known[name], value, name)
            elif not isinstance(value, known[name]):
                raise ConfigError(f"section {name!r} must be a mapping of {known[name].__name__} settings")

    @staticmethod
    def expand_dict(data: dict, where: str = "model") -> dict:
        """``config: NAME`` names a packaged model config (``models/configs/NAME.json``) to start from; the other
        keys override its fields (nested sections key by key), open_clip style."""
        if "config" not in data:
            return data
        name = data["config"]
        if not isinstance(name, str):
            raise ConfigError(f"{where}.config must name a model config ({', '.join(list_model_configs())})")
        return merge_dicts(named_config(name), {k: v for k, v in data.items() if k != "config"})

    @staticmethod
    def extra_sections() -> dict[str, type]:
        """The keys a model config takes besides its fields: each registered method's own section."""
        return method_sections()

    def settings_for(self, method: str | None = None):
        """The settings of ``method`` (default: the config's own): its section as given, else its defaults."""
        chosen = get_method(method or self.method)
        if chosen.section == "dept":
            return self.dept
        return self.sections.get(chosen.section) or chosen.default_settings()

    def record_method(self, dept: DePTConfig, section_settings=None) -> None:
        """Record the input method's settings as built (``methods.resolved_settings``): the prompt's, with the
        backbone's width, and its own section (e.g. ADePT's r, resolved from the budget), so that a saved run names
        what it used."""
        self.dept = dept
        chosen = get_method(self.method)
        if section_settings is not None and chosen.section not in (None, "dept"):
            self.sections[chosen.section] = section_settings

    def with_backbone(self, name: str | None) -> "ModelConfig":
        """This config with its frozen backbone loaded from ``name`` instead (the VLM of a native model, else the
        text backbone); itself for None."""
        if name is None:
            return self
        if self.vlm is not None:
            return dataclasses.replace(self, vlm=name)
        return dataclasses.replace(self, text=dataclasses.replace(self.text, backbone=name))

    @property
    def num_prompts(self) -> int:
        """Prompts a prompt method gives the model: one per task of a multi-task model, else dept.num_prompts."""
        return len(self.tasks) if self.prompt_per_task and len(self.tasks) > 1 else self.dept.num_prompts

    def to_dict(self) -> dict:
        """The config as a file holds it: the methods' sections as keys of their own; a native VLM's without the
        assembled model's settings it never uses (its vision encoder, text backbone, tokenizer and template)."""
        data = asdict(self)
        if self.vlm is not None:
            del data["vision"]
            data["text"] = {k: data["text"][k] for k in NATIVE_TEXT_SETTINGS}
        return {**{k: v for k, v in data.items() if k != "sections"}, **data["sections"]}

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
        return cls.from_dict(named_config(name))


def merge_dicts(base: dict, update: dict) -> dict:
    """``base`` with ``update``'s values, merging nested mappings key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def named_config(name: str) -> dict:
    """The dict of the named architecture ``name`` (``dept_vl/models/configs/<name>.json``)."""
    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown model config {name!r}; known: {', '.join(list_model_configs())}")
    return read_config(path, "model config") or {}


def list_model_configs() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
