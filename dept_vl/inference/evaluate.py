"""Evaluation: batched generation over a task split, the task's metric, and the predictions file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .._dataclass import check_int, setting
from ..data.batches import ImageInputs, TaskSplit, contexts_of
from ..data.data_dirs import DataDirs
from ..data.feature_cache import cached_features
from ..data.tasks import Example, get_task
from ..data.tasks.own import parse_sources, split_sources
from ..errors import ConfigError
from ..fast import for_inference, resolve_device
from ..io import write_json, write_text
from ..progress import progress as progress_bar
from ..runs.data_config import absolute_sources
from ..runs.run_dir import RunDir, SavedModel


@dataclass(frozen=True)
class Decoding:
    """How predictions are made: examples per generation batch, beams (1 = greedy), the progress bar's label (None:
    no bar)."""

    batch_size: int = 128
    num_beams: int = 1
    desc: str | None = "predict"


@torch.no_grad()
def predict_examples(model, split: TaskSplit, images: ImageInputs, task_index: int, examples: Sequence[Example],
                     decoding: Decoding = Decoding(), accelerator=None) -> dict:
    """``{example id: generated text}`` for ``examples`` of ``split`` (the ``task_index``-th task's, its images from
    ``images``), with the task's own generate settings; under several processes each predicts a slice and all get
    the union."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine, data, size = list(examples)[rank::world], split.data, decoding.batch_size
    was_training = model.training
    model.eval()
    predictions = {}
    bar = progress_bar(total=-(-len(mine) // size), desc=decoding.desc, unit="batch",
                       disable=decoding.desc is None or rank != 0, leave=False)
    for start in range(0, len(mine), size):
        chunk = mine[start : start + size]
        batch = model.prepare([ex.source for ex in chunk], task=data.task, **images.inputs(task_index, data, chunk),
                              **contexts_of(chunk))
        predictions.update(zip([ex.id for ex in chunk], model.generate(**batch, num_beams=decoding.num_beams,
                                                                      **(split.task.generation or {}))))
        bar.update(1)
    bar.close()
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        merged = {}
        for part in gather_object([predictions]):
            merged.update(part)
        predictions = merged
    return predictions


def evaluate_split(model, split: TaskSplit, images: ImageInputs, task_index: int, decoding: Decoding = Decoding(),
                   limit: int = 0, accelerator=None):
    """(scores, predictions) of the model on ``split`` (its first ``limit`` examples when ``limit``); the scores
    name the split and count the examples beside the task's metrics."""
    examples = split.data.examples[: limit or None]
    predictions = predict_examples(model, split, images, task_index, examples, decoding, accelerator)
    scores = {"split": split.data.split, "examples": len(examples), **split.task.score(predictions, examples)}
    return scores, predictions


def split_role(task, split: str) -> str:
    """``val`` or ``test`` for the task's own validation / test split, else the split's name: the key of its
    scores in metrics.json."""
    roles = {task.default_splits[1]: "val", task.default_splits[2]: "test"}
    return roles.get(split, split)


def split_named(task, name: str | None) -> str:
    """The split ``--split`` means for ``task``: ``val`` / ``test`` (default) are the task's own validation / test
    split (NLVR2: dev / test1); another name is that split."""
    name = name or "test"
    if name in ("val", "test") and name not in task.splits:
        chosen = task.default_splits[1 if name == "val" else 2]
        if chosen is None:
            raise ConfigError(f"task {task.name!r} has no {name} split; choose from {', '.join(task.splits)}")
        return chosen
    return task.check_split(name)


def write_predictions(path: str | Path, examples: Sequence[Example], predictions: dict[str, str]) -> None:
    """JSONL: one ``{"id", "source", "prediction", "targets"}`` line per example, written atomically."""
    lines = [json.dumps({"id": ex.id, "images": list(ex.image_ids), "source": ex.source,
                         "prediction": predictions.get(ex.id, ""), "targets": ex.targets}) for ex in examples]
    write_text(path, "\n".join(lines) + "\n")


@dataclass
class EvalConfig:
    """``dept-vl eval``: score a checkpoint on a split of its task(s)."""

    checkpoint: str = setting(help="a run's output dir, its model/ dir, or a step checkpoint")
    task: str | None = setting(None, "the task to score (default: every task the checkpoint was trained on)")
    split: str | None = setting(None, "val | test (each task's own; default: test) or a split's name")
    data_dir: DataDirs = setting(None, "the data, as for train (default: the data the checkpoint was trained with)",
                                 flag={"action": "append", "metavar": "[TASK=]DIR"})
    data: dict | None = setting(None, "for a run trained on your own data (--data): score this file instead of its "
                                "test data", flag={"action": "append", "metavar": "[NAME=]SOURCE"})
    output_dir: str | None = setting(None, "where predictions and metrics go (default: RUN/eval)")
    overwrite: bool = setting(False, "replace earlier eval outputs of the same name")
    backbone: str | None = setting(None, "load the text backbone from here instead of the saved path or name")
    batch_size: int = setting(128, "examples per generation batch")
    num_beams: int = setting(1, "1 = greedy; >1 = beam search")
    limit: int = setting(0, "evaluate the first N examples only (0 = all)")
    cache: bool = setting(True, "read the frozen encoder's outputs from the feature cache (--no-cache: run the "
                          "vision encoder)")
    cache_dir: str | None = setting(None, "the feature cache directory, as for `dept-vl features` (default: "
                                    "$DEPT_VL_CACHE/features/<task>/...)")
    device: str = setting("auto", "auto (CUDA when there is one) | cpu | cuda | cuda:N")
    compile: bool | None = setting(None, "the fast path: greedy generation through a compiled static KV cache, "
                                   "lengths bucketed (default: on CUDA, off on the CPU)")

    def __post_init__(self) -> None:
        for name, minimum in (("batch_size", 1), ("num_beams", 1), ("limit", 0)):
            check_int(name, getattr(self, name), minimum)
        self.data_dir = DataDirs.parse(self.data_dir)
        self.data = absolute_sources(parse_sources(self.data), Path.cwd())


def evaluate_checkpoint(config: EvalConfig | str | Path, log=print, **settings) -> dict:
    """Score ``config.split`` (``val`` / ``test``: each task's own; default test; its first ``limit`` examples) of
    ``config.task``, or of every task the checkpoint was trained on; write each task's predictions JSONL and one
    metrics JSON into ``output_dir`` (default: the run's ``eval/``; never the files training wrote), as train's
    metrics.json has them; return the metrics. ``evaluate_checkpoint("runs/x", limit=10)`` builds the EvalConfig."""
    cfg = config if isinstance(config, EvalConfig) else EvalConfig(checkpoint=str(config), **settings)
    saved = SavedModel.find(cfg.checkpoint)
    device = resolve_device(cfg.device)  # a bad --device is refused before anything is written
    own = own_test_data(saved, cfg.data)
    tasks = [get_task(name, own=own) for name in ([cfg.task] if cfg.task else saved.tasks or [saved.task()])]
    splits = {task.name: split_named(task, cfg.split) for task in tasks}
    roles = {split_role(task, splits[task.name]) for task in tasks}
    role = roles.pop() if len(roles) == 1 else cfg.split
    paths = RunDir(saved.run_root).eval_outputs(splits, role, cfg.limit, cfg.output_dir, cfg.overwrite)
    model = saved.load(cfg.backbone)
    fast = for_inference(model, device, cfg.compile)
    scores = {}
    for task in tasks:
        where = cfg.data_dir.for_task(task.name)
        data = task.load(splits[task.name], where if where is not None else saved.data_dir(task.name))
        result, predictions = _score(model, task, data, cfg)
        prefix = f"{task.name}/" if len(saved.tasks) > 1 else ""
        scores.update({prefix + k: v for k, v in result.items()})
        write_predictions(paths["predictions"][task.name], data.examples[: cfg.limit or None], predictions)
    metrics = {role: scores}
    write_json(paths["metrics"], metrics)
    if fast is not None:
        log(f"compiled: {fast.graphs} graph(s), {fast.graph_breaks} graph break(s)")
    log(f"wrote {paths['metrics']}")
    return metrics


def own_test_data(saved: SavedModel, data: dict | None) -> dict:
    """The run's own data sets, the test data of those ``data`` names (one unnamed file: the run's one data set)
    replaced by the file given."""
    own = saved.own_data()
    if not data:
        return own
    if not own:
        raise ConfigError("eval --data is for a run trained on your own data (train --data); this one was trained on "
                          f"{', '.join(saved.tasks) or 'a built-in task'}: use --data-dir")
    for name, source in data.items():
        target = name if name in own else next(iter(own)) if len(own) == 1 and len(data) == 1 else None
        if target is None:
            raise ConfigError(f"eval --data {name}=...: the run's data sets are {', '.join(own)}")
        test = split_sources(source, None, None, False)[2]  # a directory of split folders: its test/
        own[target] = dataclasses.replace(own[target], test=test or source)
    return own


def _score(model, task, data, cfg: EvalConfig) -> tuple[dict, dict]:
    """(scores, predictions) of ``model`` on ``data`` of ``task``, its images read from the feature cache."""
    data.check_images()
    cache = None
    if cfg.cache and model.vision is not None:
        cache = cached_features(task.name, data.images_for(), model.vision, cache_dir=cfg.cache_dir)
    return evaluate_split(model, TaskSplit(task, data), ImageInputs([cache]), 0, Decoding(cfg.batch_size, cfg.num_beams),
                          limit=cfg.limit)
