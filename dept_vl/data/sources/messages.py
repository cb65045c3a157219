"""Chat messages with images, as LLaMA-Factory, ms-swift and TRL read them: ``{"messages": [{"role": "user",
"content": "<image>..."} | typed parts [{"type": "image"}, {"type": "text", "text": ...}]}, {"role": "assistant",
...}], "images": [...]}``. One example per assistant message, the messages before its question (a system turn included) as context."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import InputError
from .base import IMAGE_PLACEHOLDER, Record, guarded, iter_objects, register_format, resolve_image
from .llava import turns_to_records

ROLES = ("user", "assistant", "system")


def content_text(content, where: str) -> str:
    """A message's text: a string, or typed parts whose images become ``<image>`` placeholders."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InputError(f"{where}: a message's content must be text or a list of typed parts")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("image", "image_url"):
            parts.append(IMAGE_PLACEHOLDER)
        elif kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            raise InputError(f"{where}: a content part must be {{\"type\": \"image\"}} or {{\"type\": \"text\", "
                             f"\"text\": ...}}, got {part!r:.60}")
    return " ".join(parts)


def message_records(record, base: Path, where: str) -> list[Record]:
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise InputError(f"{where}: expected {{\"messages\": [...], \"images\": [...]}}")
    images = record.get("images") or ([record["image"]] if record.get("image") else [])
    if not isinstance(images, list) or not images:
        raise InputError(f"{where}: record has no images ('images': a list)")
    images = [resolve_image(i, base, where) for i in images]
    turns = []
    for n, message in enumerate(record["messages"], 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(f"{where}: message {n} must have a role (user, assistant or system) and content")
        turns.append((message["role"], content_text(message.get("content"), f"{where}, message {n}")))
    return turns_to_records(turns, images, where, group=where)


def read_messages(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None) -> Iterator[Record]:
    bad = [] if bad is None else bad
    for where, record in iter_objects(path, skip_bad_lines, log, bad):
        yield from guarded(where, lambda: message_records(record, path.parent, where), skip_bad_lines, log, bad)


register_format("messages", read_messages, lambda path, first: isinstance(first, dict) and "messages" in first,
                help="chat messages + images: {messages: [{role, content}], images: [...]} (LLaMA-Factory, TRL)")
