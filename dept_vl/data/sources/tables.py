"""Tables of simple records: CSV (streamed row by row) or Parquet (streamed batch by batch), with the columns of a
simple record (``image`` or ``images`` as a JSON list, ``question``, ``answer`` or ``answers`` as a JSON list,
optional ``type``); image paths relative to the table's folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from ...errors import InputError
from .base import Record, guarded, register_format
from .simple import simple_record

LISTS = ("images", "answers")  # columns that hold a list: a JSON list in a CSV cell


def table_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) of a CSV or Parquet file, one at a time."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield f"{path}, row {number}", row
        return
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for number, row in enumerate(csv.DictReader(fh), 1):
                yield f"{path}, row {number}", {k: _cell(k, v) for k, v in row.items() if k is not None}
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None


def _cell(column: str, value: str | None):
    if value is None or value == "":
        return None
    if column in LISTS:
        try:
            return json.loads(value)
        except ValueError:
            return [value]
    return value


def read_table(path: Path, skip_bad_lines: bool = False, log=None, bad: list | None = None) -> Iterator[Record]:
    bad = [] if bad is None else bad
    for where, row in table_rows(path):
        yield from guarded(where, lambda: [simple_record(row, path.parent, where)], skip_bad_lines, log, bad)


register_format("table", read_table, lambda path, first: path.suffix.lower() in (".csv", ".parquet"),
                help="CSV or Parquet with the simple record's columns")
