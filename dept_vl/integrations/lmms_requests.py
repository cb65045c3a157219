"""What lmms-eval's requests become for a dept-vl model, without lmms-eval itself: a document's images, a task's
``generation_kwargs`` as ``generate`` options, its stop strings, and the teacher-forced log-probability of a
continuation (``loglikelihood``)."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..errors import InputError
from ..models.images import to_rgb

BLANK_SIZE = (224, 224)  # the blank image that stands in for a document's missing one
IMAGE_TAG = "<image>"  # a placeholder some lmms-eval prompts carry; dept-vl places the images itself


def doc_images(visual) -> list[Image.Image]:
    """A document's ``doc_to_visual`` result (None, one image, a list, a list of lists) as RGB images; a video
    (a file name) is refused in one line."""
    if visual is None:
        return []
    items = visual if isinstance(visual, (list, tuple)) else [visual]
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = items[0]
    images = []
    for item in items:
        if not isinstance(item, Image.Image):
            raise InputError(f"dept_vl reads images; this document gives a {type(item).__name__} ({str(item)[:80]!r}: "
                             "video and audio tasks are not supported)")
        images.append(to_rgb(item))
    return images


def blank_image() -> Image.Image:
    return Image.new("RGB", BLANK_SIZE, "white")


def tiled(images: Sequence[Image.Image]) -> Image.Image:
    """``images`` side by side in one, each scaled to the first one's height (lmms-eval's InstructBLIP joins a
    document's images into one the same way, with a number drawn on each)."""
    height = images[0].height
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    joined = Image.new("RGB", (sum(im.width for im in scaled), height), "white")
    for x, im in zip([0] + [sum(i.width for i in scaled[:k]) for k in range(1, len(scaled))], scaled):
        joined.paste(im, (x, 0))
    return joined


def question_text(context: str) -> str:
    """lmms-eval's prompt as the question dept-vl answers: its ``<image>`` placeholders removed."""
    return context.replace(IMAGE_TAG, "").strip()


def generate_options(gen_kwargs: dict) -> tuple[dict, list[str]]:
    """(``generate`` options, stop strings) of a task's ``generation_kwargs``: ``max_new_tokens``, ``num_beams``,
    ``temperature`` > 0 samples (with ``top_p`` when given); ``until`` a string or a list."""
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    options = {key: int(gen_kwargs[key]) for key in ("max_new_tokens", "num_beams") if gen_kwargs.get(key)}
    temperature = float(gen_kwargs.get("temperature") or 0)
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature)
        if gen_kwargs.get("top_p") is not None:
            options["top_p"] = float(gen_kwargs["top_p"])
    return options, until


def cut_at(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first of the stop strings ``until`` (each that occurs), stripped."""
    stops = [text.index(term) for term in until if term and term in text]
    return text[: min(stops)].strip() if stops else text.strip()


@torch.no_grad()
def continuation_scores(model, sources: list[str], images: list, continuations: list[str],
                        task: str | None = None) -> list[tuple[float, bool]]:
    """(log-probability, greedy) of each continuation as the model's answer to its source text and images:
    the sum of the log-probabilities of its tokens (the end-of-answer token the model learnt included),
    teacher-forced; greedy: every token is the most likely one."""
    batch = model.prepare(sources, images, targets=continuations, task=task)
    labels = batch["labels"]
    logits = model(**batch).logits.float()
    if model.text.kind == "causal":  # position t predicts token t + 1; labels are the sequence's last tokens
        if logits.shape[1] > labels.shape[1]:
            logits = logits[:, -labels.shape[1] - 1:-1]
        else:
            logits, labels = logits[:, :-1], labels[:, 1:]
    target = labels != -100
    picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logprobs = (picked * target).sum(1)
    greedy = ((logits.argmax(-1) == labels) | ~target).all(1)
    return [(float(lp), bool(g)) for lp, g in zip(logprobs, greedy)]
