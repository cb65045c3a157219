"""Data files in the formats VLM users already have, read into ``Record``s: one file per format, registered by name,
the format detected from the content (``--data-format`` forces one). A new format is one file plus its import here.

    simple       JSON Lines / JSON list of {image(s), question, answer(s)} records
    llava        LLaVA conversations
    messages     chat messages + images (LLaMA-Factory, ms-swift, TRL)
    table        CSV / Parquet with the simple columns
    imagefolder  a directory of images + metadata.jsonl / metadata.csv (Hugging Face datasets' layout)
    hf           hf:NAME or a save_to_disk directory
    llamafactory LLaMA-Factory's registry: dataset_info.json::NAME
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
# registration, in the order formats are tried when detecting one
from . import llamafactory  # noqa: F401, I001
from . import hf  # noqa: F401
from . import imagefolder  # noqa: F401
from . import tables  # noqa: F401
from . import llava  # noqa: F401
from . import messages  # noqa: F401
from . import simple  # noqa: F401
from .base import Record, detect_format, first_object, get_format, image_id, list_formats
from .diagnose import check_questions, why_unknown

from .imagefolder import split_dirs

__all__ = ["Record", "image_id", "list_formats", "read_source", "split_dirs"]


def read_source(source: str, format: str | None = None, skip_bad_lines: bool = False, log=None) -> list[Record]:
    """Every record of ``source`` (a file, a directory, or ``hf:NAME``), the format detected unless given; bad
    records are an InputError naming the file and record, or with ``skip_bad_lines`` skipped and counted."""
    path = Path(source)
    file = Path(str(source).partition("::")[0])  # DIR::SPLIT, or a registry's entry REGISTRY::NAME: the file
    if not str(source).startswith("hf:") and not file.exists():
        raise InputError(f"data file {file} does not exist")
    if format:
        chosen = get_format(format)
    else:
        first = first_object(path) if path.is_file() and path.suffix.lower() in (".json", ".jsonl") else None
        try:
            chosen = detect_format(path, first)
        except InputError as unknown:
            raise InputError(why_unknown(path, skip_bad_lines) or str(unknown)) from None
    bad: list = []
    records = check_questions(list(chosen.read(path, skip_bad_lines, log, bad)), source, skip_bad_lines, log, bad)
    if bad and log is not None:
        log(f"{source}: skipped {len(bad)} bad record(s) ({chosen.name} format); the first are named above")
    if not records:
        raise InputError(f"{source}: no usable records ({chosen.name} format)")
    return records
