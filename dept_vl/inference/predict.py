"""``dept-vl predict``: answer a question about an image (two for NLVR2), caption an image, or a JSONL batch."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .._dataclass import check_int, setting
from ..data.tasks.base import require
from ..errors import ConfigError, InputError
from ..fast import for_inference
from ..io import iter_jsonl
from ..models.images import load_image
from ..runs.run_dir import SavedModel

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
LOG = logging.getLogger("dept_vl")


def _looks_like_image(arg: str) -> bool:
    """An image file name, or anything on disk (a directory, a broken link or a link loop included: loading it
    then says what is wrong with it)."""
    try:
        return Path(arg).suffix.lower() in IMAGE_SUFFIXES or os.path.lexists(arg)
    except (OSError, ValueError):  # e.g. a question longer than a file name may be
        return False


def split_inputs(inputs: Sequence[str]) -> tuple[list[str], str | None]:
    """Positional arguments -> (image paths, question): existing files and image file names are images."""
    images = [a for a in inputs if _looks_like_image(a)]
    texts = [a for a in inputs if a not in images]
    if len(texts) > 1:
        raise InputError(f"one question at a time, got {len(texts)}: {texts}")
    return images, (texts[0] if texts else None)


class Predictor:
    """A loaded checkpoint plus the task whose prefix its inputs need, on ``device`` (``auto``: CUDA when there is
    one), with the fast path when ``compile`` says so (default: on CUDA)."""

    def __init__(self, checkpoint: str, task: str | None = None, num_beams: int = 1, backbone: str | None = None,
                 device: str = "cpu", compile: bool | None = False):
        saved = SavedModel.find(checkpoint)
        self.task, self.num_beams = saved.get_task(task), num_beams
        self.model = saved.load(backbone)
        for_inference(self.model, device, compile)  # the fast path, if any: self.model.fast_path
        self.model.freeze_for_inference()  # e.g. DePT's A @ B once, its rows gathered per question
        if not self.model.reads_images:
            raise ConfigError("this checkpoint takes precomputed features, not images")

    @classmethod
    def from_model(cls, model, task, num_beams: int = 1) -> "Predictor":
        """A predictor around a model already built (``task``: its task object)."""
        predictor = cls.__new__(cls)
        predictor.model, predictor.task, predictor.num_beams = model, task, num_beams
        model.freeze_for_inference()
        return predictor

    def request(self, images: Sequence, question: str | None) -> tuple[str, list]:
        """(source text, RGB images) of one question, checked: the task's number of images, a question unless
        it is a caption task. Warns (on stderr) when most of the question's words are unknown to the model."""
        if len(images) != self.task.num_images:
            raise InputError(f"task {self.task.name!r} takes {self.task.num_images} image(s), got {len(images)}")
        if question is None or not question.strip():
            if self.task.takes_question:
                raise InputError(f"task {self.task.name!r} needs a question (only caption checkpoints take none)")
            question = ""
        unknown, words = self.model.text.unknown_words(question)
        if words and unknown > words / 2:
            LOG.warning("%d of the %d words of %r are unknown to the model's tokenizer: the answer is a guess",
                        unknown, words, question)
        return self.task.source(question), [load_image(im) if isinstance(im, (str, Path)) else im for im in images]

    def answer(self, requests: Sequence[tuple[str, list]], contexts: Sequence | None = None, **options) -> list[str]:
        """The answers to checked ``request(...)``s, generated together (``contexts``: each one's earlier turns of a
        conversation, (role, text) pairs, written as in training; ``options``: ``generate``'s, over the predictor's
        beams and the task's settings, e.g. ``max_new_tokens``, ``do_sample``, ``temperature``)."""
        texts, images = zip(*requests)
        options = {"num_beams": self.num_beams, **self.task.generation, **options}
        return self.model.predict(list(texts), list(images), task=self.task.name, contexts=contexts, **options)

    def __call__(self, images: Sequence, question: str | None) -> str:
        return self.answer([self.request(images, question)])[0]

    def batch(self, path: str, skip_bad_lines: bool = False, batch_size: int = 32,
              log: Callable[[str], None] = LOG.warning) -> Iterator[dict]:
        """Each JSONL line ``{"image": p | "images": [p, q], "question": q}`` -> the line plus ``prediction``, in
        order, answered ``batch_size`` at a time. A bad line (not JSON, a missing or mistyped field, an image that
        cannot be read) is an InputError naming its number, or with ``skip_bad_lines`` is reported and skipped."""
        pending, skipped = [], []  # one list for lines that are not JSON and for records that cannot be answered
        for number, record in iter_jsonl(path, skip_bad_lines, log=log, skipped=skipped):
            try:
                images, question = _fields(record, f"{path}, line {number}")
                pending.append((record, self.request([_beside(image, path) for image in images], question)))
            except InputError as err:
                message = str(err) if f"line {number}" in str(err) else f"{path}, line {number}: {err}"
                if not skip_bad_lines:
                    raise InputError(f"{message} (pass --skip-bad-lines to answer the other lines)") from None
                skipped.append(number)
                if len(skipped) <= 10:
                    log(f"skipped {message}")
            if len(pending) == batch_size:
                yield from _answered(self, pending)
                pending = []
        yield from _answered(self, pending)
        if skipped:
            log(f"{path}: skipped {len(skipped)} bad line(s)")


def _fields(record: dict, where: str) -> tuple[list, str | None]:
    """The images and question of one JSONL record, type-checked."""
    if "images" in record:
        images = require(record, "images", where, list)
        for i, image in enumerate(images):
            require({"images": image}, "images", f"{where}, image {i}", str)
    elif "image" in record:
        images = [require(record, "image", where, str)]
    else:
        raise InputError(f"{where}: no \"image\" or \"images\" field")
    key = "question" if "question" in record else "text" if "text" in record else None
    return images, (require(record, key, where, str) if key else None)


def _beside(image: str, jsonl: str) -> str:
    """A relative image path of a JSONL line: relative to the JSONL file, as in training data; where no such file
    is there but one is relative to the working directory, that one (as dept-vl 0.2 read them)."""
    if os.path.isabs(image) or image.startswith("data:"):
        return image
    beside = os.path.join(os.path.dirname(os.path.abspath(jsonl)), image)
    return image if not os.path.exists(beside) and os.path.exists(image) else beside


def _answered(predictor: Predictor, pending: list) -> Iterator[dict]:
    if pending:
        answers = predictor.answer([request for _, request in pending])
        yield from ({**record, "prediction": answer} for (record, _), answer in zip(pending, answers))


@dataclass(kw_only=True)
class PredictConfig:
    """``dept-vl predict``: answer a question about an image (NLVR2: two images), caption an image, or answer every
    line of a JSONL file."""

    inputs: list[str] = setting(factory=list, help="image path(s), then the question (none for a caption checkpoint)",
                                flag={"positional": True, "nargs": "*", "metavar": "IMAGE [IMAGE2] [QUESTION]"})
    checkpoint: str = setting(help="a run's output dir or its model/ dir")
    task: str | None = setting(None, "the task whose prefix the question gets (default: the checkpoint's)")
    input: str | None = setting(None, "a JSONL file: {\"image\" or \"images\", \"question\"} per line (image paths "
                                      "relative to the file)")
    num_beams: int = setting(1, "1 = greedy; >1 = beam search")
    backbone: str | None = setting(None, "load the text backbone from here instead of the saved path or name")
    skip_bad_lines: bool = setting(False, "with --input: report bad lines and answer the rest")
    device: str = setting("auto", "auto (CUDA when there is one) | cpu | cuda | cuda:N")
    compile: bool | None = setting(None, "the fast path: greedy generation through a compiled static KV cache, "
                                   "lengths bucketed (default: on CUDA with --input: one question does not repay "
                                   "compiling; off on the CPU)")

    def __post_init__(self) -> None:
        check_int("num_beams", self.num_beams, 1)


def run_predict(config: PredictConfig, out=print) -> None:
    """Answer one question (``inputs``: image paths and the question) or every line of ``input``. The fast path
    (``compile``) is on by default on CUDA for a batch (``input``) only: one question does not repay compiling."""
    compile = config.compile if config.compile is not None or config.input else False
    predictor = Predictor(config.checkpoint, config.task, config.num_beams, config.backbone, config.device, compile)
    if config.input:
        for record in predictor.batch(config.input, config.skip_bad_lines):
            out(json.dumps(record))
        return
    images, question = split_inputs(config.inputs)
    if not images:
        raise InputError("give an image path (dept-vl predict IMAGE [IMAGE2] [QUESTION] --checkpoint DIR)")
    out(predictor(images, question))
