"""The lmms-eval model ``dept_vl``: a dept-vl run (assembled or native VLM; a directory or a Hub name) answering
lmms-eval's requests through ``dept-vl predict``'s ``Predictor``, so its answers are ``dept-vl predict``'s.

    lmms-eval --model dept_vl --model_args checkpoint=RUN[,batch_size=8,device=cpu,task=easyvqa] --tasks ...

Importing this module imports lmms-eval (the ``lmms-eval`` extra); ``dept_vl`` never imports it.
"""

from __future__ import annotations

import logging

from lmms_eval import utils
from lmms_eval.api.model import lmms

from ..errors import ConfigError
from ..inference.predict import Predictor
from .lmms_requests import (blank_image, continuation_scores, cut_at, doc_images, generate_options, question_text,
                            tiled)

LOG = logging.getLogger("dept_vl")
MODEL_ARGS = ("checkpoint", "batch_size", "device", "task", "num_beams", "backbone", "compile")


def _flag(value) -> bool | None:
    """A model_args boolean (lmms-eval passes ``true`` as True, but ``yes`` / ``1`` as text or numbers)."""
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on")


class DeptVL(lmms):
    """A dept-vl checkpoint as an lmms-eval model: ``generate_until`` in batches of ``batch_size`` (a task's
    ``max_new_tokens``, ``until``, ``temperature``, ``top_p``, ``num_beams`` honoured), ``loglikelihood`` as the
    teacher-forced log-probability of the continuation as the model's answer. ``task``: the dept-vl task whose
    prefix (and prompt, in a multi-task run) questions get (default: the run's one task)."""

    def __init__(self, checkpoint: str | None = None, batch_size: int | str = 8, device: str | None = "auto",
                 task: str | None = None, num_beams: int = 1, backbone: str | None = None, compile=False,
                 **unknown) -> None:
        super().__init__()
        if unknown or not checkpoint:
            raise ConfigError(f"dept_vl model_args: {'unknown ' + ', '.join(unknown) if unknown else 'no checkpoint'}"
                              f" (it takes {', '.join(MODEL_ARGS)}; checkpoint=RUN_DIR is required)")
        self.batch_size = _batch_size(batch_size)
        self.predictor = Predictor(str(checkpoint), task, int(num_beams), backbone, device or "auto", _flag(compile))
        self.any_images = self.predictor.model.any_number_of_images

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "DeptVL":
        """As lmms-eval's, except that ``--model_args``' own ``batch_size`` / ``device`` win over the flags (whose
        defaults lmms-eval always passes)."""
        args = utils.simple_parse_args_string(arg_string)
        flags = {k: v for k, v in (additional_config or {}).items() if v is not None and k in MODEL_ARGS}
        return cls(**{**flags, **args})

    # ---- documents -> dept-vl requests ------------------------------------------------------------------------
    def _request(self, context: str, doc_to_visual, doc_id, task: str, split: str) -> tuple[str, list]:
        """(source text, images) of one document, as ``Predictor.request`` makes them for ``dept-vl predict``."""
        images = doc_images(doc_to_visual(self.task_dict[task][split][doc_id]))
        source = self.predictor.task.source(question_text(context))
        return source, images if self.any_images and images else self._fit(images)

    def _requests(self, rows: list) -> list[tuple[str, list]]:
        """The dept-vl requests of lmms-eval's request arguments (context, _, doc_to_visual, doc_id, task, split)."""
        return [self._request(context, to_visual, doc_id, task, split)
                for context, _, to_visual, doc_id, task, split in rows]

    def _fit(self, images: list) -> list:
        """An assembled model's images: the number its task takes; more are tiled into the last one (as lmms-eval's
        InstructBLIP joins them); a missing one is a blank image (the model always reads one)."""
        wanted = self.predictor.task.num_images
        if len(images) > wanted:
            images = images[: wanted - 1] + [tiled(images[wanted - 1:])]
        return images + [blank_image() for _ in range(wanted - len(images))]

    # ---- lmms-eval's requests -----------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        """Answers in batches of ``batch_size`` (requests grouped by their generation_kwargs, longest first)."""
        ordered = utils.Collator([r.args for r in requests], lambda args: (-len(args[0]), args[0]), grouping=True)
        answers = []
        for chunk in ordered.get_batched(n=self.batch_size, batch_fn=None):
            options, until = generate_options(dict(chunk[0][1]))
            pending = self._requests(chunk)
            for (context, gen_kwargs, *_), answer in zip(chunk, self._answer(pending, options)):
                answers.append(cut_at(answer, until))
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answers[-1])
        return ordered.get_original(answers)

    def _answer(self, pending: list, options: dict) -> list[str]:
        """``Predictor.answer`` of the requests, in groups of one image count (a batch holds one)."""
        answers = [None] * len(pending)
        for where in _by_image_count(pending):
            for i, answer in zip(where, self.predictor.answer([pending[i] for i in where], **options)):
                answers[i] = answer
        return answers

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """(log-probability, greedy) of each continuation, ``batch_size`` at a time."""
        scores = [None] * len(requests)
        for start in range(0, len(requests), self.batch_size):
            batch = [r.args for r in requests[start:start + self.batch_size]]
            pending = self._requests(batch)
            targets = [t if isinstance(t, str) else t(self.task_dict[task][split][doc_id])
                       for _, t, _, doc_id, task, split in batch]
            for where in _by_image_count(pending):
                found = continuation_scores(self.predictor.model, [pending[i][0] for i in where],
                                            [pending[i][1] for i in where], [targets[i] for i in where],
                                            self.predictor.task.name)
                for i, score in zip(where, found):
                    scores[start + i] = score
        return scores

    def generate_until_multi_round(self, requests) -> list[str]:
        raise ConfigError("dept_vl answers one question per document: multi-round tasks are not supported")


def _batch_size(value) -> int:
    """``batch_size``: a positive number (lmms-eval's ``auto`` means the default, 8)."""
    if str(value).startswith("auto"):
        return 8
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise ConfigError(f"dept_vl model_args: batch_size must be a positive number, got {value!r}")
    return size


def _by_image_count(pending: list) -> list[list[int]]:
    """The indices of ``pending`` (source, images) requests grouped by their number of images (a batch holds one)."""
    counts = [len(images) for _, images in pending]
    return [[i for i, n in enumerate(counts) if n == count] for count in sorted(set(counts))]
