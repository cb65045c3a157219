"""A user's own data as a task: ``dept-vl train --data FILE`` (``--val-data``, ``--test-data``), any format of
``data/sources``. Not registered by name: each run's recipe describes its data (``DataSpec``), and the task is built
from that wherever the run is used (train, eval, predict, serve).

Without a test file, a fixed, seeded fraction of the training records is held out for the test (``test_fraction``),
and likewise for validation (``val_fraction``, when the run validates and has no validation file); the records of one
conversation stay together. Images are keyed by their content, so one image under two paths is one image, and a
changed file a new one. The metric is ``exact`` (exact match after the VQA answer cleaning), ``vqa`` (the official
VQA accuracy against all answers), ``anls``, ``bleu`` (BLEU-4) or ``cider``; by default exact match for questions and
CIDEr for captions; per ``type`` when the records carry one.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..._dataclass import check_choice, check_number
from ...errors import ConfigError, InputError
from ..metrics import anls, caption_metrics, exact_match, grouped_mean, vqa_accuracy
from ..sources import Record, image_id, read_source, split_dirs
from .base import Example, Task, TaskData

METRICS = ("exact", "vqa", "anls", "bleu", "cider")
NAME = re.compile(r"[A-Za-z][\w-]*")


@dataclass(frozen=True)
class DataSpec:
    """One own-data task as a run's recipe records it."""

    name: str
    train: str
    val: str | None = None
    test: str | None = None
    format: str | None = None
    metric: str | None = None
    test_fraction: float = 0.1
    val_fraction: float = 0.0
    seed: int = 0
    skip_bad_lines: bool = False
    takes_question: bool | None = None  # what the records are, once a run has read them (None: read them to know)
    num_images: int | None = None

    def __post_init__(self) -> None:
        if self.metric is not None:
            check_choice("metric", self.metric, METRICS)
        for name in ("test_fraction", "val_fraction"):
            if not 0 <= check_number(name, getattr(self, name), minimum=0) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def parse_sources(values, what: str = "--data", default: str | None = None) -> dict[str, str]:
    """``[NAME=]SOURCE`` entries (a list, one string, or a mapping) as name -> source; an unnamed source is named
    ``default``, or after its file (or, for a file called train.* / data.*, its folder)."""
    if values is None:
        return {}
    if isinstance(values, dict):
        return {str(k): str(v) for k, v in values.items()}
    out = {}
    for value in [values] if isinstance(values, str) else list(values):
        name, sep, source = str(value).partition("=")
        if not sep or not NAME.fullmatch(name) or Path(value).exists():
            name, source = default or default_name(str(value)), str(value)
        if name in out:
            raise ConfigError(f"{what}: two sources for {name!r}; name them: {what} NAME=FILE")
        out[name] = source
    return out


def split_sources(source: str, val: str | None, test: str | None, want_val: bool
                  ) -> tuple[str, str | None, str | None]:
    """(train, val, test) for ``--data SOURCE``: a directory of split folders (``train/``, ``test/``,
    ``validation/``, each an imagefolder, as ``datasets`` lays them out) gives each split its folder, unless
    ``--val-data`` / ``--test-data`` name one; anything else is the training data as it is."""
    folders = {} if str(source).startswith("hf:") else split_dirs(Path(source))
    if not folders:
        return source, val, test
    val = val or (str(folders["val"]) if want_val and "val" in folders else None)
    return str(folders["train"]), val, test or (str(folders["test"]) if "test" in folders else None)


def default_name(source: str) -> str:
    if "::" in source:  # LLaMA-Factory's registry: dataset_info.json::NAME
        return re.sub(r"\W+", "_", source.rpartition("::")[2]).strip("_") or "data"
    path = Path(source.removeprefix("hf:"))
    stem = path.stem if path.suffix else path.name
    if stem.lower() in ("train", "training", "data", "metadata", "") and path.parent.name:
        stem = path.parent.name
    return re.sub(r"\W+", "_", stem).strip("_") or "data"


class OwnTask(Task):
    """The task a DataSpec describes: its records read (and split) once, on first use."""

    default_model = "random-t5_efficientnet-lite0"

    def __init__(self, spec: DataSpec, log=None):
        self.spec, self.name, self.log = spec, spec.name, log
        self.skip_bad_lines = spec.skip_bad_lines
        self._splits: dict[str, list[Record]] | None = None

    # ---- what the task is: known from its records ----------------------------------------------------------------
    @property
    def takes_question(self) -> bool:
        if self.spec.takes_question is not None:
            return self.spec.takes_question
        return any(r.question for r in self.records("train"))

    @property
    def num_images(self) -> int:
        if self.spec.num_images is not None:
            return self.spec.num_images
        return len(self.records("train")[0].images)

    def kind(self) -> dict:
        """What the task is, for a run to record (so that using the run needs not read the data)."""
        return {"takes_question": self.takes_question, "num_images": self.num_images}

    @property
    def metric(self) -> str:
        name = self.spec.metric or ("exact" if self.takes_question else "cider")
        return {"exact": "accuracy", "vqa": "accuracy", "anls": "anls", "bleu": "BLEU-4", "cider": "CIDEr"}[name]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits it has: train, and val / test where a file or a held-out share gives one."""
        return tuple(s for s in self.default_splits if s)

    @property
    def default_splits(self) -> tuple[str, str | None, str]:
        has_val = self.spec.val is not None or self.spec.val_fraction > 0
        has_test = self.spec.test is not None or self.spec.test_fraction > 0
        return ("train", "val" if has_val else None, "test" if has_test else None)

    # ---- reading and splitting -------------------------------------------------------------------------------
    def records(self, split: str) -> list[Record]:
        if self._splits is None:
            self._splits = self._read()
        return self._splits[split]

    def _read(self) -> dict[str, list[Record]]:
        spec = self.spec
        read = lambda source: read_source(source, spec.format, spec.skip_bad_lines, self.log)  # noqa: E731
        train = read(spec.train)
        out = {"test": read(spec.test) if spec.test else None, "val": read(spec.val) if spec.val else None}
        for role, fraction in (("test", spec.test_fraction), ("val", spec.val_fraction)):
            if out[role] is None:
                out[role], train = hold_out(train, fraction, f"{spec.seed}-{role}")
        out["train"] = train
        _check_uniform(train + (out["test"] or []) + (out["val"] or []))
        return out

    def load(self, split: str, data_dir=None) -> TaskData:
        records = self.records(self.check_split(split)) or []
        if not records:
            raise InputError(f"{self.name}: the {split} split has no records (give --{split}-data FILE, or a "
                             f"{split}_fraction above 0)")
        examples, images = [], {}
        for n, record in enumerate(records):
            ids = []
            for image in record.images:
                try:
                    key = image_id(image)
                except OSError as err:
                    raise InputError(f"{record.where}: cannot read image {image}: {err.strerror or err}") from None
                images.setdefault(key, image)
                ids.append(key)
            meta = {"type": record.type, "context": record.context, "where": record.where}
            examples.append(Example(f"{split}-{n}", tuple(ids), self.source(record.question or ""),
                                    list(record.answers), meta))
        return TaskData(self.name, split, examples, images)

    # ---- targets and metrics ---------------------------------------------------------------------------------
    def training_target(self, example: Example, rng: random.Random) -> str:
        return rng.choice(example.targets)

    def reference_answer(self, example: Example) -> str:
        return Counter(example.targets).most_common(1)[0][0]

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        metric = self.spec.metric or ("exact" if self.takes_question else "cider")
        if metric in ("bleu", "cider"):
            return caption_metrics({ex.id: predictions.get(ex.id, "") for ex in examples},
                                   {ex.id: ex.targets for ex in examples})
        one = {"exact": lambda p, t: max(exact_match(p, a) for a in t), "vqa": vqa_accuracy, "anls": anls}[metric]
        scores = [one(predictions.get(ex.id, ""), ex.targets) for ex in examples]
        return grouped_mean(scores, [ex.meta.get("type") for ex in examples], total_key=self.metric)


def hold_out(records: list[Record], fraction: float, seed: str) -> tuple[list[Record] | None, list[Record]]:
    """(held out, kept): a seeded ``fraction`` of the conversations (every record of one goes the same way)."""
    if fraction <= 0:
        return None, records
    groups = sorted({r.group or r.where for r in records})
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(fraction * len(groups)))])
    if len(held) >= len(groups):
        raise InputError(f"too few records ({len(records)}) to hold out {fraction:.0%} and train on the rest"
                         + _shared_ids(records, len(groups)))
    return [r for r in records if (r.group or r.where) in held], [r for r in records if (r.group or r.where) not in held]


def _shared_ids(records: list[Record], groups: int) -> str:
    """Where records are fewer conversations than records because two share an id: the first such pair, named."""
    conversation = lambda record: record.where.split(", turn ")[0]  # noqa: E731 - the record a turn came from
    first: dict[str, Record] = {}
    for record in records:
        seen = first.setdefault(record.group, record)
        if record.group and conversation(seen) != conversation(record):
            return (f": they are {groups} conversation(s), as {seen.where} and {record.where} share the id "
                    f"{record.group!r} (give each conversation its own id)")
    return ""


def _check_uniform(records: list[Record]) -> None:
    """Every example has the same number of images (a batch holds one kind)."""
    counts = Counter(len(r.images) for r in records)
    if len(counts) > 1:
        common = counts.most_common(1)[0][0]
        odd = next(r for r in records if len(r.images) != common)
        raise InputError(f"{odd.where}: {len(odd.images)} image(s), but most records have {common}: every record of "
                         "a data set needs the same number of images")
