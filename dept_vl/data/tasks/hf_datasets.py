"""Hugging Face ``datasets`` input for the task loaders: ``hf:<name>`` or a ``save_to_disk`` directory."""

from __future__ import annotations

from typing import Any, Iterable

from ...errors import ConfigError, InputError
from .base import KeyedImages, is_hf_source  # noqa: F401  (is_hf_source: its home was here)


def open_hf_split(source: str, split: str, config: str | None = None):
    """A ``datasets`` split from ``hf:<name>`` (configuration ``config``; the Hub, or the local HF cache when
    offline) or from a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    import datasets

    if source.startswith("hf:"):
        try:
            return datasets.load_dataset(source[3:], config, split=split)
        except Exception as err:  # network, unknown name, unknown split: one clear line
            what = f"{source[3:]!r}" + (f" configuration {config!r}" if config else "")
            raise InputError(f"cannot load Hugging Face dataset {what} split {split!r}: {err}") from None
    loaded = datasets.load_from_disk(source)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ConfigError(f"{source} has no split {split!r}; it has {', '.join(loaded)}")
        return loaded[split]
    return loaded


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
