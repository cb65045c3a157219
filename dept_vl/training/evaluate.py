"""Evaluation: batched generation over a task split, the task's metric, and the predictions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..data.batches import ImageInputs, TaskSplit
from ..data.feature_cache import cached_features
from ..data.tasks import Example, get_task
from ..io import write_json, write_text
from ..progress import progress as progress_bar
from .run_dir import RunDir, SavedModel


@torch.no_grad()
def predict_examples(model, images: ImageInputs, task_index: int, data, examples: Sequence[Example], batch_size: int = 128,
                     num_beams: int = 1, accelerator=None, progress: bool = True, desc: str = "predict") -> dict:
    """``{example id: generated text}``; under several processes each predicts a slice and all get the union."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(examples)[rank::world]
    was_training = model.training
    model.eval()
    predictions = {}
    bar = progress_bar(total=-(-len(mine) // batch_size), desc=desc, unit="batch", disable=not progress or rank != 0,
                       leave=False)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        batch = model.prepare([ex.source for ex in chunk], **images.inputs(task_index, data, chunk))
        predictions.update(zip([ex.id for ex in chunk], model.generate(**batch, num_beams=num_beams)))
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
    """(scores, predictions) of the model on ``split`` (its first ``limit`` examples when ``limit``)."""
    examples = split.data.examples[: limit or None]
    predictions = predict_examples(model, images, task_index, split.data, examples, **kwargs)
    return split.task.score(predictions, examples), predictions


def write_predictions(path: str | Path, examples: Sequence[Example], predictions: dict[str, str]) -> None:
    """JSONL: one ``{"id", "source", "prediction", "targets"}`` line per example, written atomically."""
    lines = [json.dumps({"id": ex.id, "images": list(ex.image_ids), "source": ex.source,
                         "prediction": predictions.get(ex.id, ""), "targets": ex.targets}) for ex in examples]
    write_text(path, "\n".join(lines) + "\n")


def evaluate_checkpoint(checkpoint: str | Path, task_name: str | None = None, split: str | None = None,
                        data_dir: str | None = None, output_dir: str | Path | None = None, batch_size: int = 128,
                        num_beams: int = 1, limit: int = 0, use_cache: bool = True, cache_dir: str | None = None,
                        overwrite: bool = False, backbone: str | None = None, log=print) -> dict:
    """Generate for every example of ``split`` (its first ``limit``), write predictions JSONL + metrics JSON into
    ``output_dir`` (default: the run's ``eval/``; never the files training wrote), return the metrics."""
    saved = SavedModel.find(checkpoint)
    task = get_task(saved.task(task_name))
    split = split or task.default_splits[2]
    predictions_path, metrics_path = RunDir(saved.run_root).eval_outputs(task.name, split, limit, output_dir,
                                                                          overwrite)
    model = saved.load(backbone)
    data = task.load(split, data_dir if data_dir is not None else saved.data_dir(task.name))
    data.check_images()
    cache = None
    if use_cache and model.vision is not None:
        cache = cached_features(task.name, data.images_for(), model.config.vision.encoder, model.vision,
                                cache_dir=cache_dir)
    scores, predictions = evaluate_split(model, TaskSplit(task, data), ImageInputs([cache]), 0, limit=limit,
                                         batch_size=batch_size, num_beams=num_beams)
    write_predictions(predictions_path, data.examples[: limit or None], predictions)
    metrics = {split: scores}
    write_json(metrics_path, metrics)
    log(f"wrote {predictions_path} and {metrics_path}")
    return metrics
