"""Why a data source matches no format, said specifically: an empty file, an empty list, JSON that does not parse
(its line and column), a folder of images without metadata, a directory of no known layout; and the check that a
question data set has a question in every record."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from ...errors import InputError
from ..json_stream import json_starts_with
from .base import Record, guarded, iter_objects
from .imagefolder import METADATA

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
LAYOUTS = ("an imagefolder (images + metadata.jsonl / metadata.csv / metadata.parquet with file_name and the "
           "question / answer columns), split folders train/ (test/, validation/) that are each one, or a datasets "
           "save_to_disk directory; or give the data file itself")


def why_unknown(path: Path, skip_bad_lines: bool) -> str | None:
    """Why ``path`` is no data any format reads, where that can be said (else None: the generic message); an
    InputError of its own where the file does not parse (the JSON error, with its line and column)."""
    if path.is_dir():
        images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            return (f"{path}: a folder of {len(images)} image(s) but no {' / '.join(METADATA)} saying each one's "
                    "question and answer (an imagefolder needs one: a row per image, file_name and the question / "
                    "answer columns)")
        return f"{path}: a directory of no known data layout; expected {LAYOUTS}"
    if not path.is_file():
        return None
    if not json_starts_with(path):  # nothing but white space
        return f"{path} is empty: no records"
    if path.suffix.lower() not in (".json", ".jsonl"):
        return None
    first = list(islice(iter_objects(path, skip_bad_lines, None), 1))  # a JSON error here names line and column
    if not first:
        return f"{path} holds no records (an empty list)"
    return None


def check_questions(records: list[Record], source: str, skip_bad_lines: bool, log, bad: list) -> list[Record]:
    """In a question data set (some record has a question), a record with none (missing or empty) is an InputError
    naming it, or with ``skip_bad_lines`` skipped and counted in ``bad``; a caption data set (none has one) as it
    is."""
    if not any(r.question for r in records) or all(r.question for r in records):
        return records

    def asked(record: Record) -> list[Record]:
        if not record.question:
            raise InputError(f"{record.where}: no question (missing or empty), but other records of {source} have "
                             "one; a caption data set has none at all")
        return [record]

    return [kept for record in records for kept in guarded(record.where, lambda: asked(record), skip_bad_lines, log,
                                                            bad)]
