"""Hugging Face ``datasets``: ``hf:NAME`` (the Hub, or its cache offline) or a ``save_to_disk`` directory, whose
rows hold the simple record's columns (``image`` a ``datasets`` Image). ``NAME:SPLIT`` picks a split (default
``train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..hf_open import is_hf_source, open_hf_split
from .base import Record, guarded, register_format
from .simple import simple_record


def read_hf(path: Path | str, skip_bad_lines: bool = False, log=None, bad: list | None = None) -> Iterator[Record]:
    bad = [] if bad is None else bad
    source, _, split = str(path).partition("::")
    rows = open_hf_split(source, split or "train")
    for column in ("image", "images"):  # the images' own bytes (their key is a hash of those), decoded when read
        if column in rows.column_names and hasattr(rows.features[column], "decode"):
            rows = rows.cast_column(column, type(rows.features[column])(decode=False))
    for number, row in enumerate(rows, 1):
        where = f"{source} split {split or 'train'}, row {number}"
        yield from guarded(where, lambda: [simple_record(row, Path("."), where)], skip_bad_lines, log, bad)


register_format("hf", read_hf, lambda path, first: is_hf_source(str(path).partition("::")[0]),
                help="Hugging Face datasets: hf:NAME or a save_to_disk directory (NAME::SPLIT picks a split)")
