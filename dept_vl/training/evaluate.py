"""Evaluation: batched generation over a task split, the task's metric, and the predictions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..data.batches import ImageInputs, TaskSplit
from ..data.feature_cache import cached_features
from ..data.tasks import Example, get_task
from ..errors import ConfigError
from ..fast import for_inference, resolve_device
from ..io import write_json, write_text
from ..progress import progress as progress_bar
from .recipe import data_dirs
from .run_dir import RunDir, SavedModel


@torch.no_grad()
def predict_examples(model, images: ImageInputs, task_index: int, data, examples: Sequence[Example], batch_size: int = 128,
                     num_beams: int = 1, accelerator=None, progress: bool = True, desc: str = "predict",
                     generation: dict | None = None) -> dict:
    """``{example id: generated text}`` (``generation``: the task's own generate settings); under several processes
    each predicts a slice and all get the union."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(examples)[rank::world]
    was_training = model.training
    model.eval()
    predictions = {}
    bar = progress_bar(total=-(-len(mine) // batch_size), desc=desc, unit="batch", disable=not progress or rank != 0,
                       leave=False)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        batch = model.prepare([ex.source for ex in chunk], task=data.task, **images.inputs(task_index, data, chunk))
        predictions.update(zip([ex.id for ex in chunk], model.generate(**batch, num_beams=num_beams,
                                                                      **(generation or {}))))
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


def evaluate_split(model, split: TaskSplit, images: ImageInputs, task_index: int, limit: int = 0, **kwargs):
    """(scores, predictions) of the model on ``split`` (its first ``limit`` examples when ``limit``); the scores
    name the split and count the examples beside the task's metrics."""
    examples = split.data.examples[: limit or None]
    predictions = predict_examples(model, images, task_index, split.data, examples, generation=split.task.generation,
                                   **kwargs)
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


def evaluate_checkpoint(checkpoint: str | Path, task_name: str | None = None, split: str | None = None,
                        data_dir=None, output_dir: str | Path | None = None, batch_size: int = 128,
                        num_beams: int = 1, limit: int = 0, use_cache: bool = True, cache_dir: str | None = None,
                        overwrite: bool = False, backbone: str | None = None, log=print, device: str = "auto",
                        compile: bool | None = None) -> dict:
    """Score ``split`` (``val`` / ``test``: each task's own; default test; its first ``limit`` examples) of ``task_name``,
    or of every task the checkpoint was trained on; write each task's predictions JSONL and one metrics JSON into
    ``output_dir`` (default: the run's ``eval/``; never the files training wrote), as train's metrics.json has them;
    return the metrics. ``data_dir``: as for train (default: the run's). ``device`` (``auto``: CUDA when there is
    one) and ``compile`` (the fast path; default: on CUDA) as for train."""
    saved = SavedModel.find(checkpoint)
    device = resolve_device(device)  # a bad --device is refused before anything is written
    tasks = [get_task(name) for name in ([task_name] if task_name else saved.tasks or [saved.task()])]
    splits = {task.name: split_named(task, split) for task in tasks}
    roles = {split_role(task, splits[task.name]) for task in tasks}
    role = roles.pop() if len(roles) == 1 else split
    paths = RunDir(saved.run_root).eval_outputs(splits, role, limit, output_dir, overwrite)
    data_dir = data_dirs(data_dir, Path.cwd()) if data_dir is not None else None
    model = saved.load(backbone)
    fast = for_inference(model, device, compile)
    scores = {}
    for task in tasks:
        where = data_dir.get(task.name) if isinstance(data_dir, dict) else data_dir
        data = task.load(splits[task.name], where if where is not None else saved.data_dir(task.name))
        data.check_images()
        cache = None
        if use_cache and model.vision is not None:
            cache = cached_features(task.name, data.images_for(), model.config.vision.encoder, model.vision,
                                    cache_dir=cache_dir)
        result, predictions = evaluate_split(model, TaskSplit(task, data), ImageInputs([cache]), 0, limit=limit,
                                             batch_size=batch_size, num_beams=num_beams)
        prefix = f"{task.name}/" if len(saved.tasks) > 1 else ""
        scores.update({prefix + k: v for k, v in result.items()})
        write_predictions(paths["predictions"][task.name], data.examples[: limit or None], predictions)
    metrics = {role: scores}
    write_json(paths["metrics"], metrics)
    if fast is not None:
        log(f"compiled: {fast.graphs} graph(s), {fast.graph_breaks} graph break(s)")
    log(f"wrote {paths['metrics']}")
    return metrics
