"""``dept-vl predict``: answer a question about an image (two for NLVR2), caption an image, or a JSONL batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

from ..data.tasks import get_task
from ..errors import ConfigError, InputError
from ..io import iter_jsonl
from .run_dir import SavedModel

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def _looks_like_image(arg: str) -> bool:
    try:
        return Path(arg).suffix.lower() in IMAGE_SUFFIXES or Path(arg).is_file()
    except OSError:  # e.g. a question longer than a file name may be
        return False


def split_inputs(inputs: Sequence[str]) -> tuple[list[str], str | None]:
    """Positional arguments -> (image paths, question): existing files and image file names are images."""
    images = [a for a in inputs if _looks_like_image(a)]
    texts = [a for a in inputs if a not in images]
    if len(texts) > 1:
        raise InputError(f"one question at a time, got {len(texts)}: {texts}")
    return images, (texts[0] if texts else None)


class Predictor:
    """A loaded checkpoint plus the task whose prefix its inputs need."""

    def __init__(self, checkpoint: str, task: str | None = None, num_beams: int = 1, backbone: str | None = None):
        saved = SavedModel.find(checkpoint)
        self.task, self.num_beams = get_task(saved.task(task)), num_beams
        self.model = saved.load(backbone)
        if self.model.vision is None:
            raise ConfigError("this checkpoint takes precomputed features, not images")

    def __call__(self, images: Sequence[str], question: str | None) -> str:
        if len(images) != self.task.num_images:
            raise InputError(f"task {self.task.name!r} takes {self.task.num_images} image(s), got {len(images)}")
        if question is None or not question.strip():
            if self.task.name != "caption":
                raise InputError(f"task {self.task.name!r} needs a question (only caption checkpoints take none)")
            question = ""
        return self.model.predict([self.task.source(question)], [list(images)], num_beams=self.num_beams)[0]

    def batch(self, path: str, skip_bad_lines: bool = False) -> Iterator[dict]:
        """Each JSONL line ``{"image": p | "images": [p, q], "question": q}`` -> the line plus ``prediction``."""
        for number, record in iter_jsonl(path, skip_bad_lines):
            images = record.get("images") or ([record["image"]] if "image" in record else [])
            if not images:
                raise InputError(f"{path}, line {number}: no \"image\" or \"images\" field")
            question = record.get("question", record.get("text"))
            yield {**record, "prediction": self(images, question)}


def run_predict(inputs: Sequence[str], checkpoint: str, task: str | None = None, input_file: str | None = None,
                num_beams: int = 1, backbone: str | None = None, out=print) -> None:
    predictor = Predictor(checkpoint, task, num_beams, backbone)
    if input_file:
        for record in predictor.batch(input_file):
            out(json.dumps(record))
        return
    images, question = split_inputs(inputs)
    if not images:
        raise InputError("give an image path (dept-vl predict IMAGE [IMAGE2] [QUESTION] --checkpoint DIR)")
    out(predictor(images, question))
