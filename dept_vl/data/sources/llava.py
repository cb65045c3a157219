"""LLaVA's conversations: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}, ...]}`` (``image`` may be a list). A conversation of several answer turns gives one
example per answer, with the turns before it as context; ``<image>`` placeholders, when there are any, must be as
many as the images."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import InputError
from .base import (IMAGE_PLACEHOLDER, Record, check_placeholders, guarded, iter_objects, register_format,
                   resolve_image)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def turns_to_records(turns: list[tuple[str, str]], images: list, where: str, group: str) -> list[Record]:
    """One Record per assistant turn: the user turn before it is the question, everything earlier the context."""
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for role, text in turns if role == "user")
    if placeholders and placeholders != len(images):
        raise InputError(f"{where}: {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) for {len(images)} image(s)")
    records, context = [], []
    for i, (role, text) in enumerate(turns):
        if role == "assistant":
            if i == 0 or turns[i - 1][0] != "user":
                raise InputError(f"{where}: turn {i + 1} answers no question (an assistant turn must follow a user "
                                 "turn)")
            if not text.strip():
                raise InputError(f"{where}: turn {i + 1}, the answer, is empty")
            question = check_placeholders(turns[i - 1][1], text.count(IMAGE_PLACEHOLDER) or len(images), where)
            records.append(Record(images, question or None, [text.strip()], f"{where}, turn {i + 1}",
                                  context=list(context[:-1]), group=group))
        context.append((role, check_placeholders(text, text.count(IMAGE_PLACEHOLDER), where)))
    if not records:
        raise InputError(f"{where}: the conversation has no answer turn")
    return records


def llava_records(record, base: Path, where: str) -> list[Record]:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    conversation = record.get("conversations")
    if not isinstance(conversation, list) or not conversation:
        raise InputError(f"{where}: 'conversations' must be a non-empty list of turns")
    images = record.get("image")
    if images is None:
        raise InputError(f"{where}: record has no 'image'")
    images = [resolve_image(i, base, where) for i in (images if isinstance(images, list) else [images])]
    turns = []
    for n, turn in enumerate(conversation, 1):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ROLES:
            raise InputError(f"{where}: turn {n} must be {{\"from\": \"human\" | \"gpt\", \"value\": text}}")
        if ROLES[turn["from"]] != "system":
            turns.append((ROLES[turn["from"]], turn["value"]))
    return turns_to_records(turns, images, where, group=str(record.get("id", where)))


def read_llava(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None) -> Iterator[Record]:
    bad = [] if bad is None else bad
    for where, record in iter_objects(path, skip_bad_lines, log, bad):
        yield from guarded(where, lambda: llava_records(record, path.parent, where), skip_bad_lines, log, bad)


register_format("llava", read_llava, lambda path, first: isinstance(first, dict) and "conversations" in first,
                help="LLaVA conversations: {id, image, conversations: [{from: human|gpt, value}, ...]}")
