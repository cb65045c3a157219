"""Training recipes: a ``model:`` section (ModelConfig) and a ``train:`` section (TrainConfig), as YAML.

Precedence: TrainConfig defaults < the task's default model < the recipe file < command-line flags.
``dept-vl train --task easyvqa`` with no file runs the built-in offline default. Recipes ship in ``recipes/`` and are
named without their suffix (``--config vqa_t5-base_clip``). Every TrainConfig field is also a ``dept-vl train`` flag,
with the field's help text.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._dataclass import check_choice, check_int, check_number, from_dict, setting
from ..errors import ConfigError
from ..data.tasks import get_task, list_tasks
from ..fast import BACKENDS, MODES
from ..io import read_config, write_text
from ..models import ModelConfig

RECIPE_DIR = Path(__file__).parent / "recipes"  # the recipes that ship with dept-vl, by name
SCHEDULES = ("linear", "constant")
PRECISIONS = ("no", "bf16", "fp16")
WEIGHTINGS = ("tokens", "batches")


@dataclass
class TrainConfig:
    task: str = setting("easyvqa", "one task, or several joined by commas (multi-task, one task per batch)")
    data_dir: Any = setting(None, "the task's data directory, or TASK=DIR (repeat it for each task of a multi-task "
                                  "run); in a recipe file: DIR, TASK=DIR entries or a mapping; relative paths are "
                                  "relative to the recipe file, on the command line to the working directory",
                            flag={"action": "append", "metavar": "[TASK=]DIR"})
    train_split: str | None = setting(None, "training split (default: the task's own)")
    eval_split: str | None = setting(None, "validation split for --eval-every and the best checkpoint")
    test_split: str | None = setting(None, "split scored once at the end with the chosen weights")
    output_dir: str = setting("runs/{task}-{method}", "where the run's files go ({task} and {method} are filled in)")
    max_steps: int = setting(3000, "optimizer steps; 0 = use --epochs")
    epochs: float = setting(0.0, "epochs to train when --max-steps is 0")
    batch_size: int = setting(32, "examples per process per micro-step")
    grad_accum: int = setting(1, "micro-steps per optimizer step")
    prompt_lr: float = setting(0.3, "learning rate of DePT's prompt P")
    lowrank_lr: float = setting(5e-3, "learning rate of DePT's A and B")
    projection_lr: float = setting(1e-3, "learning rate of the visual projection")
    lr: float = setting(1e-4, "learning rate of backbone weights under --method lora / full")
    weight_decay: float = setting(0.0, "AdamW weight decay (never on the prompt, biases or norms)")
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 = no clipping")
    warmup_steps: int = setting(0, "steps of linear warmup")
    lr_schedule: str = setting("linear", "linear (warmup, then linear decay to 0) | constant (after warmup)")
    mixed_precision: str = setting("no", "no | bf16 | fp16")
    eval_every: int = setting(0, "optimizer steps between validations (0 = none); keeps the best checkpoint")
    eval_examples: int = setting(0, "validate on the first N examples of the eval split (0 = all)")
    test_examples: int = setting(0, "test on the first N examples of the test split (0 = all)")
    eval_batch_size: int = setting(128, "examples per generation batch in validation and test")
    save_every: int = setting(0, "optimizer steps between resumable checkpoints (0 = only at the end)")
    keep_checkpoints: int = setting(2, "newest resumable checkpoints kept (the best one is kept besides)")
    log_every: int = setting(20, "optimizer steps between loss logs")
    seed: int = setting(0, "seed of the initialisation and of the data order")
    k_shot: int = setting(0, "train on K examples per task (0 = all)")
    task_temperature: float = setting(1.0, "multi-task: each task's share of the batches is proportional to its "
                                      "examples ** (1 / T): 1 = to its size, larger = more even, inf = equal")
    task_weighting: str = setting("tokens", "multi-task: tokens = every target token weighs the same whichever its "
                                  "task (tasks of longer targets, e.g. captions, count more); batches = every batch")
    num_beams: int = setting(1, "beams in validation and test generation (1 = greedy)")
    compile: bool | None = setting(None, "the fast path: the training step and greedy generation compiled "
                                   "(torch.compile, static KV cache), sequence lengths bucketed, and under bf16 the "
                                   "frozen backbone stored in bf16; default: on CUDA, off on the CPU")
    compile_backend: str = setting("inductor", "with --compile: inductor | aot_eager | eager (the last two make the "
                                   "same graphs without generating code: for checking)")
    compile_mode: str = setting("default", "with --compile and inductor: default | reduce-overhead (CUDA graphs) | "
                                "max-autotune | max-autotune-no-cudagraphs")
    bucket_multiple: int = setting(8, "with --compile: text and target lengths are rounded up to a power of two up "
                                   "to this, then to a multiple of it (one compiled graph per bucket)")
    cache_features: bool = setting(True, "read the frozen encoder's outputs from the feature cache")
    cache_dir: str | None = setting(None, "the feature cache directory (default: $DEPT_VL_CACHE/features/<task>/...)")
    tensorboard: bool = setting(True, "write TensorBoard logs to OUTPUT/logs")
    skip_nan: bool = setting(False, "skip a step whose loss is NaN / inf instead of stopping")
    skip_bad_lines: bool = setting(False, "skip malformed JSONL lines in the data (and count them)")

    def __post_init__(self) -> None:
        for name in ("prompt_lr", "lowrank_lr", "projection_lr", "lr"):
            check_number(f"train.{name}", getattr(self, name), above=0)
        for name in ("epochs", "weight_decay", "max_grad_norm"):
            check_number(f"train.{name}", getattr(self, name), minimum=0)
        check_number("train.task_temperature", self.task_temperature, above=0)
        for name in ("batch_size", "grad_accum", "eval_batch_size", "keep_checkpoints", "log_every", "num_beams",
                     "bucket_multiple"):
            check_int(f"train.{name}", getattr(self, name), 1)
        for name in ("max_steps", "eval_every", "eval_examples", "test_examples", "save_every", "warmup_steps",
                     "k_shot", "seed"):
            check_int(f"train.{name}", getattr(self, name), 0)
        if self.max_steps == 0 and not self.epochs > 0:
            raise ConfigError("set train.max_steps or train.epochs")
        check_choice("train.lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("train.mixed_precision", self.mixed_precision, PRECISIONS)
        check_choice("train.task_weighting", self.task_weighting, WEIGHTINGS)
        check_choice("train.compile_backend", self.compile_backend, BACKENDS)
        check_choice("train.compile_mode", self.compile_mode, MODES)
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true, false or null (auto), got {self.compile!r}")
        self.data_dir = data_dirs(self.data_dir, Path.cwd())

    @property
    def tasks(self) -> list[str]:
        return [t.strip() for t in self.task.split(",") if t.strip()]

    def data_dir_for(self, task: str) -> str | None:
        if isinstance(self.data_dir, dict):
            return self.data_dir.get(task)
        if self.data_dir is not None and len(self.tasks) > 1:
            raise ConfigError(f"a run of several tasks needs each one's data: --data-dir TASK=DIR for each of "
                              f"{', '.join(self.tasks)}")
        return self.data_dir


def data_dirs(value: Any, base: Path) -> str | dict[str, str] | None:
    """``train.data_dir`` in one form: None, one directory, or task -> directory, from a directory, a mapping, or
    ``TASK=DIR`` entries (a list: the repeated ``--data-dir``). Local paths become absolute (relative ones against
    ``base``), so that a run's recipe works from anywhere; ``hf:<name>`` sources stay as they are."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        entries = [tuple(v.split("=", 1)) if v.split("=", 1)[0] in list_tasks() else (None, v) for v in value]
    else:
        raise ConfigError(f"train.data_dir must be a directory, TASK=DIR entries or a mapping, got {value!r}")
    if any(not isinstance(d, str) for _, d in entries):
        raise ConfigError(f"train.data_dir: every directory must be a string, got {value!r}")
    if any(task is None for task, _ in entries) and len(entries) > 1:
        raise ConfigError("give one --data-dir DIR (one task), or --data-dir TASK=DIR for each task")
    absolute = {task: d if d.startswith("hf:") else os.path.abspath(base / os.path.expanduser(d)) for task, d in entries}
    return absolute[None] if None in absolute else absolute


@dataclass
class Recipe:
    model: ModelConfig = setting(factory=ModelConfig, help="the model (ModelConfig)")
    train: TrainConfig = setting(factory=TrainConfig, help="the training run (TrainConfig)")

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_yaml())

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        """A saved recipe (``recipe.yaml`` of a run), every key checked."""
        return from_dict(cls, read_yaml(path), "recipe")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: the path as given if it exists, else the packaged recipe of that name (``vqa_t5-base_clip``;
    ``configs/vqa_t5-base_clip.yaml``, the path in a checkout of dept-vl 0.1, names it too)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = RECIPE_DIR / f"{path.name.removesuffix('.yaml').removesuffix('.yml')}.yaml"
    if packaged.is_file():
        return packaged
    raise ConfigError(f"config file not found: {path} (nor a packaged recipe of that name: {', '.join(list_recipes())})")


def read_yaml(path: str | Path) -> dict:
    """The sections of a recipe file: a mapping with ``model:`` and ``train:`` only."""
    data = read_config(path) or {}
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
    path = find_recipe(config_file) if config_file else None
    data = read_yaml(path) if path else {}
    from_file, overrides = dict(data.get("train") or {}), dict(train_overrides or {})
    if "data_dir" in from_file:  # relative to the recipe (the packaged ones: to the working directory)
        base = Path.cwd() if path.parent == RECIPE_DIR else path.parent.resolve()
        from_file["data_dir"] = data_dirs(from_file["data_dir"], base)
    if "data_dir" in overrides:
        overrides["data_dir"] = data_dirs(overrides["data_dir"], Path.cwd())
    train_data = _merge(from_file, overrides)
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
