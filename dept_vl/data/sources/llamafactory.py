"""LLaMA-Factory's data registry: ``--data path/dataset_info.json::NAME`` reads the dataset ``NAME`` that
``dataset_info.json`` describes, as LLaMA-Factory does: its ``file_name`` (JSON / JSON Lines, beside the registry),
``formatting`` ``sharegpt`` (a list of messages under ``columns.messages``, roles and text under ``tags``) or
``alpaca`` (``instruction`` + ``input`` -> ``output``, earlier ``history`` pairs), images under ``columns.images``
relative to the registry's folder. Entries that name a hub dataset (``hf_hub_url``, ...) are refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import InputError
from ...io import parse_json
from .base import Record, guarded, iter_objects, register_format, resolve_image
from .llava import turns_to_records

SEPARATOR = "::"
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}


def registry_entry(path: Path) -> tuple[Path, dict]:
    """(the data file, the entry) that ``REGISTRY.json::NAME`` names."""
    registry, _, name = str(path).rpartition(SEPARATOR)
    try:
        entries = parse_json(Path(registry).read_bytes())
    except ValueError as err:
        raise InputError(f"{registry} is not valid JSON: {err}") from None
    if not isinstance(entries, dict) or name not in entries:
        known = ", ".join(sorted(entries)[:12]) if isinstance(entries, dict) else "none"
        raise InputError(f"{registry}: no dataset {name!r} (it names: {known})")
    entry = entries[name]
    if not isinstance(entry, dict) or "file_name" not in entry:
        raise InputError(f"{registry}: dataset {name!r} is not a local file (no file_name); dept-vl reads the "
                         "entries whose data is a file beside the registry")
    return Path(registry).parent / entry["file_name"], entry


def sharegpt_turns(record: dict, columns: dict, tags: dict, where: str) -> list[tuple[str, str]]:
    tags = {**SHAREGPT_TAGS, **tags}
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system"}
    messages = record.get(columns.get("messages", "conversations"))
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: {columns.get('messages', 'conversations')!r} must be a non-empty list of messages")
    turns = []
    for n, message in enumerate(messages, 1):
        role = roles.get(message.get(tags["role_tag"])) if isinstance(message, dict) else None
        text = message.get(tags["content_tag"]) if isinstance(message, dict) else None
        if role is None or not isinstance(text, str):
            raise InputError(f"{where}: message {n} must be {{{tags['role_tag']!r}: {tags['user_tag']!r} | "
                             f"{tags['assistant_tag']!r}, {tags['content_tag']!r}: text}}")
        if role != "system":
            turns.append((role, text))
    return turns


def alpaca_turns(record: dict, columns: dict, where: str) -> list[tuple[str, str]]:
    def text(column: str, default: str | None) -> str:
        value = record.get(columns.get(column, default)) if columns.get(column, default) else None
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: {columns.get(column, default)!r} must be text")
        return value or ""

    prompt = "\n".join(t for t in (text("prompt", "instruction"), text("query", "input")) if t)
    turns = []
    for pair in record.get(columns.get("history", ""), None) or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise InputError(f"{where}: history must be a list of [question, answer] pairs")
        turns += [("user", pair[0]), ("assistant", pair[1])]
    return turns + [("user", prompt), ("assistant", text("response", "output"))]


def entry_records(record, entry: dict, base: Path, where: str) -> list[Record]:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    columns, formatting = entry.get("columns", {}), entry.get("formatting", "alpaca")
    if formatting == "sharegpt":
        turns = sharegpt_turns(record, columns, entry.get("tags", {}), where)
    elif formatting == "alpaca":
        turns = alpaca_turns(record, columns, where)
    else:
        raise InputError(f"{where}: formatting {formatting!r}; dept-vl reads sharegpt and alpaca")
    images = record.get(columns.get("images", "images")) or []
    images = [resolve_image(i, base, where) for i in (images if isinstance(images, list) else [images])]
    if not images:
        raise InputError(f"{where}: record has no images ({columns.get('images', 'images')!r})")
    return turns_to_records(turns, images, where, group=where)


def read_llamafactory(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None
                      ) -> Iterator[Record]:
    bad = [] if bad is None else bad
    data, entry = registry_entry(path)
    if not data.is_file():
        raise InputError(f"{path}: its data file {data} does not exist")
    base = Path(str(path).rpartition(SEPARATOR)[0]).parent  # LLaMA-Factory's media_dir: the registry's folder
    for where, record in iter_objects(data, skip_bad_lines, log, bad):
        yield from guarded(where, lambda: entry_records(record, entry, base, where), skip_bad_lines, log, bad)


def is_registry_entry(path) -> bool:
    """``REGISTRY::NAME`` where the registry is a JSON file (a ``DIR::SPLIT`` of a ``save_to_disk`` directory is not)."""
    registry, separator, _ = str(path).rpartition(SEPARATOR)
    return bool(separator) and Path(registry).is_file() and registry.lower().endswith(".json")


register_format("llamafactory", read_llamafactory, lambda path, first: is_registry_entry(path),
                help="LLaMA-Factory's registry: dataset_info.json::NAME (sharegpt or alpaca, with images)")
