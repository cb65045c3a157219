"""An ``imagefolder`` directory as Hugging Face ``datasets`` defines it: images, and ``metadata.jsonl`` or
``metadata.csv`` whose ``file_name`` names each record's image (relative to the directory), beside the simple
record's columns."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .base import Record, guarded, iter_objects, register_format
from .simple import simple_record
from .tables import table_rows

METADATA = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


def metadata_file(directory: Path) -> Path | None:
    return next((directory / name for name in METADATA if (directory / name).is_file()), None)


SPLIT_DIRS = {"train": ("train", "training"), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}


def split_dirs(path: Path) -> dict[str, Path]:
    """A directory whose ``train/`` (and ``test/``, ``validation/``) subfolders are imagefolders, as ``datasets``
    lays out splits: split -> subfolder; {} for anything else (a directory with its own metadata is one split)."""
    if not path.is_dir() or metadata_file(path) is not None:
        return {}
    found = {split: next((path / n for n in names if metadata_file(path / n) is not None), None)
             for split, names in SPLIT_DIRS.items()}
    return {split: folder for split, folder in found.items() if folder is not None} if found["train"] else {}


def read_imagefolder(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None
                     ) -> Iterator[Record]:
    bad = [] if bad is None else bad
    metadata = metadata_file(path)
    rows = iter_objects(metadata, skip_bad_lines, log, bad) if metadata.suffix == ".jsonl" else table_rows(metadata)
    for where, row in rows:
        if isinstance(row, dict) and "file_name" in row and "image" not in row:
            row = {**row, "image": row["file_name"]}
        yield from guarded(where, lambda: [simple_record(row, path, where)], skip_bad_lines, log, bad)


register_format("imagefolder", read_imagefolder, lambda path, first: path.is_dir() and metadata_file(path) is not None,
                help="a directory of images with metadata.jsonl / metadata.csv (file_name + the simple columns)")
