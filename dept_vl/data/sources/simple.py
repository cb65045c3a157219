"""Simple records, in JSON Lines or a JSON list: ``{"image": "a.jpg", "question": "...", "answer": "..."}``.

``images: [...]`` for several images, ``answers: [...]`` for several references, ``prompt`` / ``query`` for the
question and ``response`` / ``caption`` for the answer; a record with no question is a caption; an optional
``type`` groups the metric. Image paths are relative to the data file's folder; an image may be base64 inline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import InputError
from .base import Record, check_placeholders, guarded, iter_objects, register_format, resolve_image, text_field

QUESTION, ANSWER = ("question", "prompt", "query"), ("answer", "response", "caption", "text")


def simple_record(record, base: Path, where: str) -> Record:
    """One simple record (also a row of a table, or of a ``datasets`` split) as a Record."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if record.get("images") is not None:
        images = record["images"]
        if not isinstance(images, list) or not images:
            raise InputError(f"{where}: field 'images' must be a non-empty list")
    elif record.get("image") is not None:
        images = [record["image"]]
    else:
        raise InputError(f"{where}: record has no image ('image' or 'images')")
    images = [resolve_image(image, base, where) for image in images]
    question = text_field(record, QUESTION, where, required=False)
    question = None if question is None else check_placeholders(question, len(images), where) or None
    if record.get("answers") is not None:
        answers = record["answers"]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise InputError(f"{where}: field 'answers' must be a non-empty list of non-empty texts")
    else:
        answers = [text_field(record, ANSWER, where)]
    kind = record.get("type")
    return Record(images, question, [a.strip() for a in answers], where, type=None if kind is None else str(kind))


def read_simple(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None) -> Iterator[Record]:
    bad = [] if bad is None else bad
    for where, record in iter_objects(path, skip_bad_lines, log, bad):
        yield from guarded(where, lambda: [simple_record(record, path.parent, where)], skip_bad_lines, log, bad)


def detect_simple(path: Path, first) -> bool:
    """A record with an image or a question / answer field (one that lacks the other is then named as such)."""
    return (isinstance(first, dict) and "conversations" not in first and "messages" not in first
            and any(k in first for k in ("image", "images", *QUESTION, *ANSWER, "answers")))


register_format("simple", read_simple, detect_simple,
                help="JSON Lines / JSON list of {image(s), question, answer(s)} records")
