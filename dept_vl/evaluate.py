"""Evaluation: batched generation over a task split, the task's metric, and the predictions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .checkpoint import atomic_write
from .data import ImageInputs, TaskSplit
from .tasks import Example


@torch.no_grad()
def predict_examples(model, images: ImageInputs, task_index: int, data, examples: Sequence[Example], batch_size: int = 128,
                     num_beams: int = 1, accelerator=None, progress: bool = True, desc: str = "predict") -> dict:
    """``{example id: generated text}``; under several processes each predicts a slice and all get the union."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(examples)[rank::world]
    was_training = model.training
    model.eval()
    predictions = {}
    for start in tqdm(range(0, len(mine), batch_size), desc=desc, unit="batch", disable=not progress or rank != 0,
                      leave=False):
        chunk = mine[start : start + batch_size]
        batch = model.prepare([ex.source for ex in chunk], **images.inputs(task_index, data, chunk))
        predictions.update(zip([ex.id for ex in chunk], model.generate(**batch, num_beams=num_beams)))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        merged = {}
        for part in gather_object([predictions]):
            merged.update(part)
        predictions = merged
    return predictions


def evaluate_split(model, split: TaskSplit, images: ImageInputs, task_index: int, limit: int = 0, **kwargs):
    """(scores, predictions) of the model on ``split`` (its first ``limit`` examples when ``limit``)."""
    examples = split.data.examples[: limit or None]
    predictions = predict_examples(model, images, task_index, split.data, examples, **kwargs)
    return split.task.score(predictions, examples), predictions


def write_predictions(path: str | Path, examples: Sequence[Example], predictions: dict[str, str]) -> None:
    """JSONL: one ``{"id", "source", "prediction", "targets"}`` line per example, written atomically."""
    lines = [json.dumps({"id": ex.id, "images": list(ex.image_ids), "source": ex.source,
                         "prediction": predictions.get(ex.id, ""), "targets": ex.targets}) for ex in examples]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def load_run_model(checkpoint: str | Path, backbone: str | None = None):
    """(model, recipe or None) from a run's ``model/`` directory, a step checkpoint, or a bare saved model."""
    from .errors import CheckpointError
    from .model import VisionLanguageModel
    from .train_config import Recipe, read_yaml
    from ._dataclass import from_dict

    checkpoint = Path(checkpoint)
    if (checkpoint / "model").is_dir() and not (checkpoint / "dept_vl_config.json").exists():
        checkpoint = checkpoint / "model"  # a run's output directory
    if not checkpoint.is_dir():
        raise CheckpointError(f"checkpoint directory {checkpoint} does not exist")
    recipe = None
    if (checkpoint / "recipe.yaml").is_file():
        recipe = from_dict(Recipe, read_yaml(checkpoint / "recipe.yaml"), "recipe")
    return VisionLanguageModel.from_pretrained(checkpoint, backbone=backbone), recipe


def evaluate_checkpoint(checkpoint: str | Path, task_name: str | None = None, split: str | None = None,
                        data_dir: str | None = None, output_dir: str | Path | None = None, batch_size: int = 128,
                        num_beams: int = 1, limit: int = 0, use_cache: bool = True, cache_dir: str | None = None,
                        log=print) -> dict:
    """Generate for every example of ``split``, write predictions JSONL + metrics JSON, return the metrics."""
    from .checkpoint import write_json
    from .errors import ConfigError
    from .feature_cache import cached_features
    from .tasks import get_task

    model, recipe = load_run_model(checkpoint)
    if task_name is None:
        if recipe is None or len(recipe.train.tasks) != 1:
            raise ConfigError("name the task with --task (the checkpoint does not say which one)")
        task_name = recipe.train.tasks[0]
    if data_dir is None and recipe is not None:
        data_dir = recipe.train.data_dir_for(task_name) if task_name in recipe.train.tasks else None
    task = get_task(task_name)
    split = split or task.default_splits[2]
    data = task.load(split, data_dir)
    data.check_images()
    cache = None
    if use_cache and model.vision is not None:
        cache = cached_features(task.name, data.images_for(), model.config.vision.encoder, model.vision,
                                cache_dir=Path(cache_dir) / task.name if cache_dir else None)
    scores, predictions = evaluate_split(model, TaskSplit(task, data), ImageInputs([cache]), 0, limit=limit,
                                         batch_size=batch_size, num_beams=num_beams)
    out = Path(output_dir or (checkpoint if Path(checkpoint).is_dir() else "."))
    examples = data.examples[: limit or None]
    write_predictions(out / f"predictions-{task.name}-{split}.jsonl", examples, predictions)
    metrics = {split: scores}
    write_json(out / f"metrics-{task.name}-{split}.json", metrics)
    log(f"wrote {out / f'predictions-{task.name}-{split}.jsonl'}")
    return metrics
