"""The recipe's ``data:`` section: a user's own data instead of a built-in task (``dept-vl train --data FILE``).

In a recipe file::

    data:
      train: data/train.jsonl        # or NAME: SOURCE entries, one per data set (multi-task)
      val: data/val.jsonl            # optional; default: val_fraction of train, when the run validates
      test: data/test.jsonl          # optional; default: test_fraction of train, held out
      format: llava                  # default: detected from the content
      metric: vqa                    # default: exact match for questions, CIDEr for captions

Each field is also a ``dept-vl train`` flag (``--data``, ``--val-data``, ``--test-data``, ``--data-format``,
``--metric``, ``--test-fraction``, ``--val-fraction``). Recipes of dept-vl 0.2 held these as ``train:`` keys
(``train.data``, ``train.val_data``, ...); ``split_flat_keys`` reads them from there too.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .._dataclass import setting
from ..data.tasks import DataSpec
from ..data.tasks.own import parse_sources, split_sources
from ..errors import ConfigError

FLAT_KEYS = {"data": "train", "val_data": "val", "test_data": "test", "data_format": "format", "metric": "metric",
             "test_fraction": "test_fraction", "val_fraction": "val_fraction", "data_kinds": "kinds"}


@dataclass
class DataConfig:
    """Your own data sets: name -> source for each role, and how they are read, split and scored."""

    train: dict | None = setting(None, "your own data instead of --task: a file (JSON Lines / JSON of records, LLaVA "
                                 "conversations, chat messages, CSV, Parquet), an imagefolder directory, or hf:NAME; "
                                 "NAME=SOURCE, repeated, for several data sets (multi-task)",
                                 flag={"name": "data", "action": "append", "metavar": "[NAME=]SOURCE"})
    val: dict | None = setting(None, "validation data for --eval-every (default: --val-fraction of --data)",
                               flag={"name": "val_data", "action": "append", "metavar": "[NAME=]SOURCE"})
    test: dict | None = setting(None, "test data (default: --test-fraction of --data, held out)",
                                flag={"name": "test_data", "action": "append", "metavar": "[NAME=]SOURCE"})
    format: str | None = setting(None, "the format of --data: simple | llava | messages | table | imagefolder | hf "
                                 "(default: detected from the content)", flag={"name": "data_format"})
    metric: str | None = setting(None, "with --data: exact | vqa | anls | bleu | cider (default: exact match for "
                                 "questions, CIDEr for captions)")
    test_fraction: float = setting(0.1, "with --data and no --test-data: the seeded share of its records held out "
                                   "for the test")
    val_fraction: float = setting(0.1, "with --data, --eval-every and no --val-data: the seeded share held out for "
                                  "validation")
    kinds: dict | None = setting(None, "what each data set is, recorded by the run that read it (takes a question, "
                                 "images per example), so that using the run needs not read the data",
                                 flag={"hidden": True})

    def __post_init__(self) -> None:
        self.train = absolute_sources(parse_sources(self.train), Path.cwd())
        one = next(iter(self.train)) if self.train and len(self.train) == 1 else None  # an unnamed file is its data's
        for role in ("val", "test"):
            given = parse_sources(getattr(self, role), f"--{role}-data", one)
            setattr(self, role, absolute_sources(given, Path.cwd()))
        unknown = set(self.val or {}) | set(self.test or {})
        if unknown - set(self.train or {}):
            raise ConfigError(f"--val-data / --test-data for {sorted(unknown - set(self.train or {}))[0]!r}, which "
                              "--data does not name")
        if self.kinds is not None and not isinstance(self.kinds, dict):
            raise ConfigError(f"data.kinds must be a mapping of data set -> what it is, got {self.kinds!r}")
        self.specs()  # its values checked now

    @property
    def names(self) -> list[str]:
        """The data sets, in order (empty: the run trains a built-in task)."""
        return list(self.train or {})

    def specs(self, seed: int = 0, skip_bad_lines: bool = False, validates: bool = False) -> dict[str, DataSpec]:
        """name -> the DataSpec of each data set, for ``get_task(name, own=...)``; ``validates``: the run validates,
        so a data set without validation data holds out ``val_fraction``."""
        specs = {}
        for name, source in (self.train or {}).items():
            train, val, test = split_sources(source, (self.val or {}).get(name), (self.test or {}).get(name),
                                             validates)
            specs[name] = DataSpec(name, train, val, test, format=self.format, metric=self.metric,
                                   test_fraction=self.test_fraction,
                                   val_fraction=self.val_fraction if validates else 0.0, seed=seed,
                                   skip_bad_lines=skip_bad_lines, **(self.kinds or {}).get(name, {}))
        return specs

    def described(self, kinds: dict[str, dict]) -> "DataConfig":
        """This section with what each data set is (``Task.kind()``, once its records were read) recorded."""
        return dataclasses.replace(self, kinds={**(self.kinds or {}), **kinds}) if kinds else self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def absolute_sources(sources: dict[str, str], base: Path) -> dict[str, str] | None:
    """Local data paths made absolute (against ``base``); ``hf:`` sources as they are; None for none."""
    return {name: s if s.startswith("hf:") else os.path.abspath(base / os.path.expanduser(s))
            for name, s in sources.items()} or None


def split_flat_keys(train: dict) -> tuple[dict, dict]:
    """(train settings, data settings) of a mapping of ``train:`` settings that may hold the own-data keys as
    dept-vl 0.2 wrote them (``data``, ``val_data``, ``test_data``, ``data_format``, ``metric``, ...)."""
    flat = {FLAT_KEYS[k]: v for k, v in train.items() if k in FLAT_KEYS}
    return {k: v for k, v in train.items() if k not in FLAT_KEYS}, flat


def sources_relative_to(data: dict, base: Path) -> dict:
    """A ``data:`` mapping from a recipe file with its local sources made absolute against the file's folder."""
    out = dict(data)
    if out.get("train") is not None:
        out["train"] = absolute_sources(parse_sources(out["train"]), base)
    one = next(iter(out["train"])) if out.get("train") and len(out["train"]) == 1 else None
    for role in ("val", "test"):
        if out.get(role) is not None:
            out[role] = absolute_sources(parse_sources(out[role], f"--{role}-data", one), base)
    return out
