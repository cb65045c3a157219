"""A training run's session: everything ``fit`` needs, set up from a recipe.

``setup`` loads the data, builds the model (and the random backbone of an offline run, and the feature caches),
the optimizer and the schedule; ``restore`` puts back the latest checkpoint on --resume; ``begin`` writes the
resolved recipe and starts the trackers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import time
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..data.batches import BatchOrder, ImageInputs, TaskSplit, k_shot
from ..data.feature_cache import open_feature_cache
from ..data.tasks import get_task
from ..errors import CheckpointError, ConfigError
from ..fast import FastPath, enable, use_compile
from ..methods import get_method, param_groups
from ..models import VLModel, create_model
from ..models.random_t5 import materialize_random_backbone
from ..runs.recipe import Recipe
from ..runs.run_dir import RunDir
from .length import total_steps
from .sharding import prepare_at_scale, prepare_model
from .state import latest_checkpoint, load_state, restore_rng


@dataclass
class Session:
    """What one training run holds while it runs."""

    recipe: Recipe
    run: RunDir
    accelerator: Any
    splits: dict[str, list[TaskSplit | None]]
    images: ImageInputs
    raw: VLModel  # the model itself
    model: Any  # the model as accelerate prepared it (wrapped for DDP on several processes)
    optimizer: Any
    scheduler: Any
    order: BatchOrder
    total: int  # optimizer steps of the whole run
    say: Callable[[str], None]
    params: list[torch.nn.Parameter] = field(default_factory=list)  # the trainable ones
    tokens_per_example: float | None = None  # multi-task token weighting: the mean target length it divides by
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    started: float = 0.0  # time.time() when setup began

    @property
    def cfg(self):
        return self.recipe.train

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process



# ---- setup --------------------------------------------------------------------------------------------------
def make_accelerator(recipe: Recipe, run: RunDir):
    """The run's accelerate ``Accelerator`` (one process, or one of ``accelerate launch``'s)."""
    from accelerate import Accelerator

    cfg = recipe.train
    missing = [t for t in cfg.trackers if importlib.util.find_spec(t) is None]
    if missing:
        raise ConfigError(f"--report-to {missing[0]}: the {missing[0]} package is not installed (pip install "
                          f"{missing[0]}), or pick another tracker (tensorboard, none)")
    return Accelerator(mixed_precision=cfg.mixed_precision, log_with=cfg.trackers or None, project_dir=str(run.logs))


def setup(recipe: Recipe, run: RunDir, accelerator, log=print, splits: dict | None = None) -> Session:
    """The data (``splits``, when ``load_splits`` read them already), the model (and its feature caches), the
    optimizer and the schedule."""
    from accelerate.utils import set_seed

    started, cfg = time.time(), recipe.train
    say = log if accelerator.is_main_process else (lambda *_: None)
    set_seed(cfg.seed)
    splits = splits if splits is not None else load_splits(recipe, say)
    recipe = described(recipe, splits)
    raw = build_model(recipe, splits, run, accelerator)
    sharded = prepare_at_scale(recipe, raw, accelerator, say)  # --gradient-checkpointing; FSDP2 on the CPU
    images = build_images(recipe, splits, raw.vision, accelerator, say)
    fast_path(recipe, raw, accelerator.device, say)
    rates = cfg.learning_rates()
    optimizer = torch.optim.AdamW(param_groups(raw, rates["prompt"], rates["lowrank"], cfg.weight_decay,
                                               other_lr=rates["other"], backbone_lr=rates["backbone"]),
                                  fused=accelerator.device.type == "cuda" or None)
    order = BatchOrder([len(s.data) for s in splits["train"]], cfg.batch_size * accelerator.num_processes, cfg.seed,
                       accelerator.process_index, accelerator.num_processes, cfg.task_temperature)
    total = total_steps(cfg, order, say)
    scheduler = _schedule(cfg, optimizer, total)
    model, optimizer = prepare_model(accelerator, raw, optimizer, sharded)
    tokens = target_tokens(raw, splits["train"], order.shares, cfg.seed) if (
        len(recipe.tasks) > 1 and cfg.task_weighting == "tokens") else None
    return Session(recipe, run, accelerator, splits, images, raw, model, optimizer, scheduler, order, total, say,
                   params=[p for p in raw.parameters() if p.requires_grad], tokens_per_example=tokens, started=started)


def fast_path(recipe: Recipe, model: VLModel, device, say) -> FastPath | None:
    """--compile (default: on CUDA): under bf16 the frozen backbone is stored in bf16 (no cast per step), then the
    model's step and generation are compiled over bucketed lengths. None when off."""
    cfg = recipe.train
    if not use_compile(cfg.compile, device):
        return None
    if cfg.mixed_precision == "bf16" and not get_method(recipe.model.method).modifies_backbone:
        model.text.to(torch.bfloat16)
    say(f"compiling ({cfg.compile_backend}, mode {cfg.compile_mode}); lengths bucketed to multiples of "
        f"{cfg.bucket_multiple}: the first step of each bucket compiles")
    return enable(model, True, device, cfg.compile_backend, cfg.compile_mode, cfg.bucket_multiple)


def target_tokens(model: VLModel, splits: list[TaskSplit], shares: list[int], seed: int,
                  sample: int = 256) -> float:
    """Target tokens per training example, over the tasks as the run samples them (a few hundred of each task's
    targets tokenised): what a batch's summed token loss is divided by under token weighting."""
    means = []
    for split in splits:
        rng = random.Random(f"target-tokens-{seed}")
        examples = rng.sample(split.data.examples, min(sample, len(split.data.examples)))
        targets = [split.task.training_target(ex, rng) for ex in examples]
        labels = model.prepare_targets(targets, device="cpu")
        means.append(float((labels != -100).sum()) / len(targets))
    return sum(m * share for m, share in zip(means, shares)) / sum(shares)


def _schedule(cfg, optimizer, total: int):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if cfg.lr_schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
    return get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)


def load_splits(recipe: Recipe, log) -> dict[str, list[TaskSplit | None]]:
    """Train (k-shot when asked), validation and test splits of every task."""
    cfg = recipe.train
    out = {"train": [], "eval": [], "test": []}
    own = recipe.own_data()
    for name in recipe.tasks:
        task = get_task(name, own=own, log=log)
        task.skip_bad_lines = cfg.skip_bad_lines
        default = dict(zip(("train", "eval", "test"), task.default_splits))
        for role, chosen in (("train", cfg.train_split), ("eval", cfg.eval_split), ("test", cfg.test_split)):
            split = chosen or default[role]
            if not split:  # e.g. easy-vqa has no validation split
                out[role].append(None)
                continue
            data = task.load(split, recipe.data_dir_for(name))
            if role == "train":
                data = k_shot(data, cfg.k_shot, cfg.seed)
            data.check_images()
            out[role].append(TaskSplit(task, data))
            log(f"{name} {role}: {split}, {len(data)} examples")
    return out


def described(recipe: Recipe, splits: dict) -> Recipe:
    """The recipe with what each of its own data sets is (``Task.kind()``, now that its records were read) recorded
    in its ``data:`` section, so that eval / predict / serve of the run need not read the data."""
    kinds = {s.task.name: s.task.kind() for s in splits["train"] if s.task.kind() is not None}
    return dataclasses.replace(recipe, data=recipe.data.described(kinds))


def build_model(recipe: Recipe, splits: dict, run: RunDir, accelerator) -> VLModel:
    """The model of the recipe (the random backbone of an offline run written first, by the main process, into the
    run directory; the recipe keeps naming it ``random``), its vision encoder on the accelerator's device. Built
    before the caches: a bad backbone fails fast."""
    texts = [t for s in splits["train"] for ex in s.data.examples
             for t in (ex.source, *ex.targets, *(turn for _, turn in ex.meta.get("context") or ()))]
    texts += ["user", "assistant"] if any(ex.meta.get("context") for s in splits["train"] for ex in s.data.examples) \
        else []
    with accelerator.main_process_first():  # the main process writes the random backbone; the others read it
        config = materialize_random_backbone(recipe.model, texts, run.backbone, write=accelerator.is_main_process)
    config = dataclasses.replace(config, tasks=list(recipe.tasks))  # the model says what it was trained for
    return create_model(config, device=accelerator.device)


def build_images(recipe: Recipe, splits: dict, vision, accelerator, log) -> ImageInputs:
    """Per task, a feature cache holding every image of its splits (every process encodes a share, on its own
    device, and returns once all are cached), or raw images."""
    cfg = recipe.train
    caches = []
    for t, name in enumerate(recipe.tasks):
        if not cfg.cache_features or vision is None:
            caches.append(None)
            continue
        views = []
        for role, limit in (("train", 0), ("eval", cfg.eval_examples), ("test", cfg.test_examples)):
            split = splits[role][t]
            if split is not None:
                views.append(split.data.images_for(split.data.examples[: limit or None]))
        images = ChainMap(*views)
        cache = open_feature_cache(name, vision, cfg.cache_dir)
        if cache.missing(list(images)):
            log(f"{name}: caching image features in {cache.root}"
                + (f" ({accelerator.num_processes} processes share the work)" if accelerator.num_processes > 1 else ""))
        cache.build(images, vision, progress=accelerator.is_main_process)  # each process its share; all wait
        caches.append(cache)
    return ImageInputs(caches)


def restore(s: Session) -> None:
    """--resume: weights, optimizer, scheduler, RNG, step, history and best score of the latest checkpoint."""
    directory = latest_checkpoint(s.run.checkpoints)
    if directory is None:
        raise CheckpointError(f"--resume: no complete checkpoint in {s.run.checkpoints}")
    state = load_state(directory)
    s.raw.load_trainable(directory)
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    s.step, s.history, s.best = state["step"], state["history"], state["best"]
    s.say(f"resumed from {directory} at step {s.step}")


def begin(s: Session) -> None:
    """The resolved recipe into the run directory; TensorBoard on."""
    if s.main:
        s.run.root.mkdir(parents=True, exist_ok=True)
        s.run.save_recipe(s.recipe)
    if s.cfg.trackers:
        s.accelerator.init_trackers("dept-vl", config=_flat(s.recipe.to_dict()))


def _flat(config: dict, prefix: str = "") -> dict:
    """A nested config as the flat key -> number / text / bool a tracker records (TensorBoard takes no lists)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)):
            out[f"{prefix}{key}"] = value
    return out
