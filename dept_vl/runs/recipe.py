"""Training recipes, as YAML: a ``model:`` section (ModelConfig), a ``train:`` section (TrainConfig) and, for one's
own data instead of a built-in task, a ``data:`` section (DataConfig, ``runs/data_config.py``).

Precedence: TrainConfig defaults < the task's default model < the recipe file < command-line flags.
``dept-vl train --task easyvqa`` with no file runs the built-in offline default. Recipes ship in ``recipes/`` and are
named without their suffix (``--config vqa_t5-base_clip``). Every TrainConfig and DataConfig field is also a
``dept-vl train`` flag, with the field's help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from .._dataclass import check_choice, check_int, check_number, from_dict, setting
from ..errors import ConfigError
from ..data.data_dirs import DataDirs
from ..data.tasks import DataSpec, get_task
from ..fast import BACKENDS, MODES
from ..io import read_config, write_text
from ..methods.registry import GROUPS
from ..models import ModelConfig
from ..models.config import merge_dicts
from .data_config import DataConfig, split_flat_keys, sources_relative_to

RECIPE_DIR = Path(__file__).parent / "recipes"  # the recipes that ship with dept-vl, by name
SCHEDULES = ("linear", "constant")
PRECISIONS = ("no", "bf16", "fp16")
WEIGHTINGS = ("tokens", "batches")
SECTIONS = ("model", "train", "data")
TRACKERS = ("tensorboard", "wandb", "mlflow")
OWN_DATA_EPOCHS = 3.0  # --data with neither --max-steps nor --epochs (as the Hugging Face Trainer's default)


@dataclass
class TrainConfig:
    task: str = setting("easyvqa", "one task, or several joined by commas (multi-task, one task per batch)")
    data_dir: DataDirs = setting(None, "the task's data directory, or TASK=DIR (repeat it for each task of a multi-task "
                                  "run); in a recipe file: DIR, TASK=DIR entries or a mapping; relative paths are "
                                  "relative to the recipe file, on the command line to the working directory",
                            flag={"action": "append", "metavar": "[TASK=]DIR"})
    train_split: str | None = setting(None, "training split (default: the task's own)")
    eval_split: str | None = setting(None, "validation split for --eval-every and the best checkpoint")
    test_split: str | None = setting(None, "split scored once at the end with the chosen weights")
    output_dir: str = setting("runs/{name}-{method}", "where the run's files go; {name} is the recipe's name (--config "
                              "NAME), else the task(s), and with --vlm the VLM's name too; {task} and {method} are "
                              "filled in as well")
    max_steps: int = setting(3000, "optimizer steps; 0 = use --epochs (default: 3000; with --data and no --epochs: "
                             "0)")
    epochs: float = setting(0.0, "passes over the training examples; given alone it sets the length (default: 0; "
                            "with --data and no --max-steps: 3)")
    batch_size: int = setting(32, "examples per process per micro-step")
    grad_accum: int = setting(1, "micro-steps per optimizer step")
    prompt_lr: float = setting(0.3, "learning rate of the prompts P")
    lowrank_lr: float = setting(5e-3, "learning rate of the input update: DePT's A and B, ADePT's network")
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
    cache_features: bool = setting(True, "read the frozen encoder's outputs from the feature cache (a native VLM: the "
                                   "features its frozen vision tower and projector give the language model; with "
                                   "--train-projector the tower's output before the projector)")
    gradient_checkpointing: bool = setting(False, "recompute the language model's activations in the backward pass "
                                           "(less memory on long sequences, about one more forward of it per step)")
    cache_dir: str | None = setting(None, "the feature cache directory (default: $DEPT_VL_CACHE/features/<task>/...)")
    tensorboard: bool = setting(True, "write TensorBoard logs to OUTPUT/logs (--no-tensorboard: as --report-to none)")
    report_to: str = setting("tensorboard", "experiment trackers, through accelerate: tensorboard | wandb | mlflow | "
                             "none, or several joined by commas (wandb and mlflow: install them yourself)")
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
        for tracker in self.trackers or ["none"]:
            check_choice("train.report_to", tracker, TRACKERS + ("none",))
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true, false or null (auto), got {self.compile!r}")
        self.data_dir = DataDirs.parse(self.data_dir)

    @property
    def task_names(self) -> list[str]:
        """The built-in tasks --task names."""
        return [t.strip() for t in self.task.split(",") if t.strip()]

    @property
    def trackers(self) -> list[str]:
        """The trackers the run logs to ([] for none; --no-tensorboard means none)."""
        names = [t.strip() for t in str(self.report_to).split(",") if t.strip() and t.strip() != "none"]
        return names if self.tensorboard else [t for t in names if t != "tensorboard"]

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of each parameter group the methods put their tensors in (``methods.GROUPS``)."""
        return {group: getattr(self, field) for group, field in LR_FIELDS.items()}

    def to_dict(self) -> dict:
        """As a recipe file holds it."""
        return {**dataclasses.asdict(self), "data_dir": self.data_dir.to_plain()}


LR_FIELDS = {"prompt": "prompt_lr", "lowrank": "lowrank_lr", "other": "projection_lr", "backbone": "lr"}
assert set(LR_FIELDS) == set(GROUPS), "every parameter group needs its learning-rate field"


@dataclass
class Recipe:
    model: ModelConfig = setting(factory=ModelConfig, help="the model (ModelConfig)")
    train: TrainConfig = setting(factory=TrainConfig, help="the training run (TrainConfig)")
    data: DataConfig = setting(factory=DataConfig, help="your own data instead of a built-in task (DataConfig)")
    name: str | None = dataclasses.field(default=None, compare=False)  # the recipe file's name, when there is one

    @property
    def run_name(self) -> str:
        """What names the run's default directory: the recipe's name, else its task(s); and its VLM's name."""
        name = self.name or "+".join(self.tasks)
        if self.model.vlm:
            name += "-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.model.vlm).name)
        return name

    @property
    def tasks(self) -> list[str]:
        """The tasks the run trains: its own data sets (``data:``), else ``train.task``'s."""
        return self.data.names or self.train.task_names

    def own_data(self) -> dict[str, DataSpec]:
        """name -> DataSpec of the run's own data sets, for ``get_task(name, own=...)``."""
        return self.data.specs(self.train.seed, self.train.skip_bad_lines, bool(self.train.eval_every))

    def data_dir_for(self, task: str) -> str | None:
        """The data directory of the built-in ``task`` (train.data_dir)."""
        return self.train.data_dir.for_task(task, self.tasks)

    def to_dict(self) -> dict:
        """As a recipe file holds it; ``data:`` only for a run of one's own data."""
        own = {"data": self.data.to_dict()} if self.data.names else {}
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), **own}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_yaml())

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        """A saved recipe (``recipe.yaml`` of a run), every key checked."""
        data = read_yaml(path)
        train, flat = split_flat_keys(data.get("train") or {})
        return cls(from_dict(ModelConfig, data.get("model") or {}, "model"), from_dict(TrainConfig, train, "train"),
                   from_dict(DataConfig, merge_dicts(flat, data.get("data") or {}), "data"))


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
    """The sections of a recipe file: a mapping with ``model:``, ``train:`` and ``data:`` only."""
    data = read_config(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with model:, train: and data: sections")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (a recipe has {', '.join(SECTIONS)})")
    for section in SECTIONS:
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ConfigError(f"{path}: {section}: must be a mapping of settings")
    return data


def run_length(from_file: dict, overrides: dict, own_data: bool = False) -> dict:
    """The file's train settings with the flags', the run's length settled: where one level gives ``epochs`` and not
    ``max_steps``, its epochs count (``--epochs 3`` alone trains 3 epochs); own data (``--data``) with no length at
    all trains OWN_DATA_EPOCHS epochs, not the task default's steps."""
    levels = [dict(from_file), dict(overrides)]
    for level in levels:
        if level.get("epochs") and "max_steps" not in level:
            level["max_steps"] = 0
    if overrides.get("epochs") and overrides.get("max_steps"):
        raise ConfigError("give --max-steps or --epochs, not both")
    merged = merge_dicts(*levels)
    if own_data and "max_steps" not in merged and "epochs" not in merged:
        merged.update(max_steps=0, epochs=OWN_DATA_EPOCHS)
    return merged


def resolve_recipe(config_file: str | Path | None = None, train_overrides: dict | None = None,
                   model: str | None = None, model_overrides: dict | None = None,
                   data_overrides: dict | None = None) -> Recipe:
    """Build the Recipe: defaults, then the task's default model, the file, ``model`` (a named model config or a
    file), then the overrides (``train_overrides``: TrainConfig fields; ``model_overrides``: nested dict;
    ``data_overrides``: DataConfig fields, which ``train_overrides`` may hold by their flag names too)."""
    path = find_recipe(config_file) if config_file else None
    data = read_yaml(path) if path else {}
    base = None if path is None else Path.cwd() if path.parent == RECIPE_DIR else path.parent.resolve()
    from_file, file_data = split_flat_keys(data.get("train") or {})
    overrides, given_data = split_flat_keys(dict(train_overrides or {}))
    if "data_dir" in from_file:  # relative to the recipe (the packaged ones: to the working directory)
        from_file["data_dir"] = DataDirs.parse(from_file["data_dir"], base)
    if "data_dir" in overrides:
        overrides["data_dir"] = DataDirs.parse(from_file.get("data_dir")).merged(DataDirs.parse(overrides["data_dir"]))
    file_data = sources_relative_to(merge_dicts(file_data, data.get("data") or {}), base) if path else {}
    own = from_dict(DataConfig, merge_dicts(file_data, {**given_data, **(data_overrides or {})}), "data")
    train = from_dict(TrainConfig, run_length(from_file, overrides, bool(own.names)), "train")
    recipe = Recipe(ModelConfig(), train, own, name=path.stem if path else None)
    if model:
        model_data = (ModelConfig.from_file(model) if Path(model).suffix in (".json", ".yaml", ".yml")
                      else ModelConfig.from_name(model)).to_dict()
    elif "model" in data:
        model_data = data["model"]
    else:  # the task's own default model, or for a native VLM the native one
        tasks = [get_task(t, own=recipe.own_data()) for t in recipe.tasks]
        default = "native-vlm" if (model_overrides or {}).get("vlm") else tasks[0].default_model
        model_data = ModelConfig.from_name(default).to_dict()
        if any(t.num_images > 1 for t in tasks):
            model_data["max_images"] = max(t.num_images for t in tasks)
    model_data = ModelConfig.expand_dict(model_data) if isinstance(model_data, dict) else model_data
    recipe.model = from_dict(ModelConfig, merge_dicts(model_data, model_overrides or {}), "model")
    return recipe
