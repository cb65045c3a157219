"""Hugging Face ``datasets`` input for the task loaders: ``hf:<name>`` or a ``save_to_disk`` directory."""

from __future__ import annotations

from typing import Any, Iterable

from ...errors import InputError
from ..hf_open import is_hf_source, open_hf_split  # noqa: F401  (their home was here; sources/ needs them too)
from .base import KeyedImages


def require_columns(table, columns: Iterable[str], where: str) -> None:
    """InputError naming the first of ``columns`` that ``table`` (a ``datasets.Dataset``) lacks."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{where}: rows have no column {missing[0]!r} (columns: {', '.join(table.column_names)})")


class DatasetImages(KeyedImages):
    """The ``column`` images of a ``datasets.Dataset`` by key (``keys[i]`` names row i; the first row of a
    repeated key wins). An image is decoded only when it is asked for, so a split of 100k images costs only
    its index until its images are read."""

    def __init__(self, table, keys: Iterable[Any], column: str = "image"):
        self.table = table.select_columns([column])
        self.column = column
        self.index: dict[str, int] = {}
        for row, key in enumerate(keys):
            self.index.setdefault(str(key), row)

    def __getitem__(self, key: str):
        return self.table[self.index[key]][self.column]
