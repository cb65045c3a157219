"""Training recipes: a ``model:`` section (ModelConfig) and a ``train:`` section (TrainConfig), as YAML.

Precedence: TrainConfig defaults < the task's default model < the recipe file < command-line flags.
``dept-vl train --task easyvqa`` with no file runs the built-in offline default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._dataclass import from_dict
from .config import ModelConfig
from .errors import ConfigError

SCHEDULES = ("linear", "constant")
PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class TrainConfig:
    task: str = "easyvqa"  # one task, or several joined by commas (multi-task, one task per batch)
    data_dir: Any = None  # the task's --data-dir; for several tasks a mapping task -> directory
    train_split: str | None = None  # default: the task's own (see Task.default_splits)
    eval_split: str | None = None  # validation split for eval_every / best checkpoint
    test_split: str | None = None  # evaluated once at the end with the chosen checkpoint
    output_dir: str = "runs/{task}-{method}"
    max_steps: int = 3000  # optimizer steps; 0 = use epochs
    epochs: float = 0.0
    batch_size: int = 32  # examples per process per micro-step
    grad_accum: int = 1
    prompt_lr: float = 0.3
    lowrank_lr: float = 5e-3
    projection_lr: float = 1e-3
    lr: float = 1e-4  # backbone weights under --method lora / full
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    warmup_steps: int = 0
    lr_schedule: str = "linear"  # linear warmup then linear decay to 0, or constant after warmup
    mixed_precision: str = "no"  # no | bf16 | fp16
    eval_every: int = 0  # optimizer steps between validations (0 = none); keeps the best checkpoint
    eval_examples: int = 0  # validate on the first N examples of the eval split (0 = all)
    test_examples: int = 0  # test on the first N examples of the test split (0 = all)
    eval_batch_size: int = 128
    save_every: int = 0  # optimizer steps between resumable checkpoints (0 = only at the end)
    keep_checkpoints: int = 2
    log_every: int = 20
    seed: int = 0
    k_shot: int = 0  # train on K examples per task (0 = all)
    num_beams: int = 1
    cache_features: bool = True  # read the frozen encoder's outputs from the feature cache
    cache_dir: str | None = None  # default: $DEPT_VL_CACHE/features/<task>/...
    tensorboard: bool = True
    skip_nan: bool = False  # skip a step whose loss is NaN / inf instead of stopping
    skip_bad_lines: bool = False  # skip malformed JSONL lines in the data (counted)

    def __post_init__(self) -> None:
        for name in ("prompt_lr", "lowrank_lr", "projection_lr", "lr"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "grad_accum", "eval_batch_size", "keep_checkpoints", "log_every", "num_beams"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("max_steps", "eval_every", "eval_examples", "test_examples", "save_every", "warmup_steps", "k_shot"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.max_steps == 0 and not self.epochs > 0:
            raise ConfigError("set train.max_steps or train.epochs")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"train.lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"train.mixed_precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.mixed_precision!r}")

    @property
    def tasks(self) -> list[str]:
        return [t.strip() for t in self.task.split(",") if t.strip()]

    def data_dir_for(self, task: str) -> str | None:
        if isinstance(self.data_dir, dict):
            return self.data_dir.get(task)
        if self.data_dir is not None and len(self.tasks) > 1:
            raise ConfigError("several tasks need train.data_dir as a mapping task -> directory")
        return self.data_dir


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        from .checkpoint import atomic_write

        text = self.to_yaml()
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with model: and train: sections")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (a recipe has model: and train:)")
    return data


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_recipe(config_file: str | Path | None = None, train_overrides: dict | None = None,
                   model: str | None = None, model_overrides: dict | None = None) -> Recipe:
    """Build the Recipe: defaults, then the task's default model, the file, ``model`` (a named model config or a
    file), then the overrides (``train_overrides``: TrainConfig fields; ``model_overrides``: nested dict)."""
    from .tasks import get_task

    data = read_yaml(config_file) if config_file else {}
    train_data = _merge(data.get("train") or {}, train_overrides or {})
    train = from_dict(TrainConfig, train_data, "train")
    if model:
        model_data = (ModelConfig.from_file(model) if Path(model).suffix in (".json", ".yaml", ".yml")
                      else ModelConfig.from_name(model)).to_dict()
    elif "model" in data:
        model_data = data["model"]
    else:
        tasks = [get_task(t) for t in train.tasks]
        model_data = ModelConfig.from_name(tasks[0].default_model).to_dict()
        if any(t.num_images > 1 for t in tasks):
            model_data["max_images"] = max(t.num_images for t in tasks)
    return Recipe(from_dict(ModelConfig, _merge(model_data, model_overrides or {}), "model"), train)
