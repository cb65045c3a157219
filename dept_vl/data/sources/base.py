"""What every data-file format shares: the ``Record`` it reads into, the registry of formats, detecting a file's
format from its content, and resolving the images a record names.

A format is one file with a reader ``read(path, skip_bad_lines, log) -> Iterator[Record]`` and a ``detect`` that
recognises a first record (or a directory, or a file's suffix), registered with ``register_format``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..._registry import Registry
from ...errors import InputError
from ...io import iter_jsonl
from ..image_check import image_problem
from ..json_stream import iter_json_list, json_starts_with

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class Record:
    """One question (or caption) about one or more images, in a form every format reads into.

    ``images``: each a file path (resolved), inline bytes or a PIL image; ``context``: the turns before the question
    as (role, text), role ``user`` or ``assistant``; ``question``: None for a caption; ``answers``: every reference
    answer; ``where``: the file and line / record, for errors."""

    images: list
    question: str | None
    answers: list[str]
    where: str
    context: list[tuple[str, str]] = field(default_factory=list)
    type: str | None = None
    group: str = ""  # records of one conversation share it (they stay in one split)


@dataclass(frozen=True)
class Format:
    name: str
    read: Callable[..., Iterator[Record]]  # read(path, skip_bad_lines, log) -> records
    detect: Callable[[Path, Any], bool]  # detect(path, first record or None) -> it is this format
    help: str


_FORMATS: Registry[Format] = Registry("data format")


def register_format(name: str, read, detect, help: str) -> Format:
    return _FORMATS.add(name, Format(name, read, detect, help))


def get_format(name: str) -> Format:
    return _FORMATS.get(name)


def list_formats() -> list[str]:
    return _FORMATS.names()


def detect_format(path: Path, first: Any) -> Format:
    """The format of ``path`` whose detector recognises it (``first``: its first record, or None)."""
    for name in _FORMATS.names():
        if _FORMATS.get(name).detect(path, first):
            return _FORMATS.get(name)
    fields = f" (its first record has {', '.join(sorted(first)[:8])})" if isinstance(first, dict) else ""
    raise InputError(f"{path}: unknown data format{fields}; a record needs image(s) and question / answer fields, "
                     "LLaVA conversations or messages; or pass --data-format "
                     f"{{{','.join(list_formats())}}}")


# ---- images ---------------------------------------------------------------------------------------------------
def resolve_image(value: Any, base: Path, where: str):
    """A record's image: a path (relative to the data file's folder), base64 (``data:image/...;base64,`` or bare)
    or an image from ``datasets``; the path resolved and checked, base64 decoded."""
    if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image (datasets' Image feature)
        return value
    if isinstance(value, dict) and ("bytes" in value or "path" in value):  # datasets' Image, not decoded
        return _readable(value["bytes"], "an image", where) if value.get("bytes") else resolve_image(
            value["path"], base, where)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: an image must be a file path or base64 image bytes, got {value!r:.40}")
    if value.startswith("data:") or (len(value) > 200 and _BASE64.fullmatch(value[:200])):
        try:
            return _readable(base64.b64decode(value.split(",", 1)[-1], validate=True), "an inline image", where)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: an inline image is not base64") from None
    if value.startswith(("http://", "https://")):
        raise InputError(f"{where}: image {value} is a URL; dept-vl reads local files only (download it first)")
    path = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise InputError(f"{where}: image {value} not found (looked for {path})")
    return _readable(str(path), f"image {value}", where)


def _readable(image: str | bytes, name: str, where: str) -> str | bytes:
    """``image`` (a path or bytes) when it can be read as an image; else an InputError naming ``where``."""
    problem = image_problem(image)
    if problem:
        raise InputError(f"{where}: {name} {problem}")
    return image


_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def image_id(image) -> str:
    """The image's key: a hash of its content, so that one image under two paths is one image (and one cache entry),
    and a file that changed is a new one."""
    if isinstance(image, bytes):
        data = image
    elif isinstance(image, str):
        data = Path(image).read_bytes()
    else:
        data = image.tobytes() + repr((image.size, image.mode)).encode()
    return hashlib.sha256(data).hexdigest()[:24]


def check_placeholders(text: str, images: int, where: str) -> str:
    """``text`` without its ``<image>`` placeholders, which must be as many as the images (or none)."""
    count = text.count(IMAGE_PLACEHOLDER)
    if count and count != images:
        raise InputError(f"{where}: {count} {IMAGE_PLACEHOLDER} placeholder(s) for {images} image(s)")
    return " ".join(text.replace(IMAGE_PLACEHOLDER, " ").split())


def text_field(record: dict, names: tuple[str, ...], where: str, required: bool = True) -> str | None:
    """The first of ``names`` the record has, as text (a clear error for another type, or, when ``required``, for
    none of them / an empty one)."""
    for name in names:
        if name in record and record[name] is not None:
            value = record[name]
            if not isinstance(value, str):
                raise InputError(f"{where}: field {name!r} must be text, got {type(value).__name__} {value!r:.40}")
            if required and not value.strip():
                raise InputError(f"{where}: field {name!r} is empty")
            return value
    if required:
        raise InputError(f"{where}: record has no field {' or '.join(repr(n) for n in names)}")
    return None


# ---- reading records of JSON / JSON Lines files ----------------------------------------------------------------
def iter_objects(path: Path, skip_bad_lines: bool, log, bad: list | None = None) -> Iterator[tuple[str, Any]]:
    """(where, object) for each line of a JSON Lines file or each element of a JSON list file, both streamed (a file
    of any size costs one record at a time); lines that are not JSON go into ``bad`` (with ``skip_bad_lines``)."""
    if path.suffix.lower() == ".jsonl":
        for number, record in iter_jsonl(path, skip_bad_lines, log=log, skipped=bad):
            yield f"{path}, line {number}", record
        return
    key = "data" if json_starts_with(path) == "{" else None  # a list, or {"data": [...]}
    items = iter_json_list(path, key, "a JSON list of records (or JSON Lines, one record per line)")
    for number, item in enumerate(items, 1):  # streamed as JSON Lines are
        yield f"{path}, record {number}", item


def first_object(path: Path) -> Any:
    """The first record of a JSON / JSON Lines file (None if it has none that parses)."""
    try:
        return next(obj for _, obj in iter_objects(path, True, None))
    except (StopIteration, InputError):
        return None


def guarded(where: str, convert: Callable[[], list[Record]], skip_bad_lines: bool, log, bad: list) -> list[Record]:
    """``convert()``'s records, or with ``skip_bad_lines`` none when it fails (the first ten failures logged, all
    counted in ``bad``); else its InputError, naming ``where``."""
    try:
        return convert()
    except InputError as err:
        message = str(err) if str(err).startswith(where) else f"{where}: {err}"
        if not skip_bad_lines:
            raise InputError(f"{message} (pass --skip-bad-lines to train on the other records)") from None
        bad.append(where)
        if log is not None and len(bad) <= 10:
            log(f"skipped {message}")
        return []
