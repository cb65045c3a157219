"""JSON data files read one record at a time (ijson), so a 500 MB annotations file never sits whole in memory.

Parsing VQAv2's train annotations whole takes ~2 GB for a 360 MB file; streamed, a process holds one record at a
time on top of what it keeps. Where ijson cannot read a file (malformed JSON, a byte that is not UTF-8, or ``NaN``,
which only Python's parser takes), the file is read whole with ``read_data_json``: its error names the line and
column, and a file that Python's parser accepts still loads.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Callable, Iterator

import ijson

from ..errors import InputError
from ..io import read_data_json


def iter_json_list(path: str | Path, key: str | None = None, expected: str | None = None) -> Iterator[Any]:
    """The elements of the list at the top of the JSON file ``path``, or of the list under its top-level ``key``.
    A file without that list raises InputError: ``{path}: expected {expected}``."""
    expected = expected or (f"a JSON object with a list under {key!r}" if key else "a JSON list")

    def whole(data: Any) -> list:
        items = data if not key else data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputError(f"{path}: expected {expected}")
        return items

    return _streamed(Path(path), lambda fh: ijson.items(fh, f"{key}.item" if key else "item", use_float=True), whole)


def iter_json_object(path: str | Path, expected: str = "a JSON object") -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of the object at the top of the JSON file ``path``."""

    def whole(data: Any) -> list:
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected {expected}")
        return list(data.items())

    return _streamed(Path(path), lambda fh: ijson.kvitems(fh, "", use_float=True), whole)


def json_starts_with(path: str | Path) -> str:
    """The first character of the JSON file ``path`` (after a byte-order mark and white space): ``[``, ``{``, ...;
    '' for an empty or unreadable file."""
    try:
        with open(path, "rb") as fh:
            _skip_bom(fh)
            while (char := fh.read(1)) and char.isspace():
                pass
    except OSError:
        return ""
    return char.decode("latin-1")


def _streamed(path: Path, items: Callable, whole: Callable[[Any], list]) -> Iterator[Any]:
    """``items(file)`` streamed; where it yields nothing (so the shape is to be checked) or fails part-way, the file
    read whole and ``whole(data)``'s elements from where the stream stopped."""
    if not path.is_file():
        raise InputError(f"missing data file {path}")
    done = 0
    try:
        with open(path, "rb") as fh:
            _skip_bom(fh)
            for item in items(fh):
                yield item
                done += 1
        if done:
            return
    except (ijson.JSONError, UnicodeDecodeError):  # the latter from ijson's pure-Python backend
        pass
    yield from whole(read_data_json(path))[done:]


def _skip_bom(fh) -> None:
    if fh.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
        fh.seek(0)
