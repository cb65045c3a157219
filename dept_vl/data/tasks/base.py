"""What every task shares: the Example record, the Task interface, the registry, and lazy image mappings."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..._registry import Registry
from ...errors import ConfigError, InputError
from ..hf_open import is_hf_source


@dataclass(slots=True)  # no __dict__ per example: 600k of them stay small
class Example:
    """One training / evaluation example.

    ``image_ids`` name images in ``TaskData.images`` (two for NLVR2); ``source`` is the model input text with the
    task prefix; ``targets`` are all reference outputs (ten human answers for VQAv2, five captions for COCO).
    """

    id: str
    image_ids: tuple[str, ...]
    source: str
    targets: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskData:
    """A loaded split: its examples and where each image lives (a path, or a PIL image from ``datasets``, which
    a ``DatasetImages`` mapping decodes only when it is read)."""

    task: str
    split: str
    examples: list[Example]
    images: Mapping[str, Any]
    missing_hint: str = ""  # said after a missing image file (e.g. which script prepares the data directory)

    def __len__(self) -> int:
        return len(self.examples)

    def images_for(self, examples: Sequence[Example] | None = None) -> Mapping[str, Any]:
        """The images that ``examples`` (default: all) refer to, id -> path or image, read only when asked for."""
        examples = self.examples if examples is None else examples
        return ImageView(self.images, (i for ex in examples for i in ex.image_ids))

    def check_images(self) -> None:
        """Every example's images are known and their files exist (InputError naming the first that is not)."""
        paths = isinstance(self.images, dict)  # other mappings hold images from ``datasets``, never paths
        seen = set()
        for ex in self.examples:
            for image_id in ex.image_ids:
                if image_id in seen:
                    continue
                seen.add(image_id)
                if image_id not in self.images or (paths and self.images[image_id] is None):
                    raise InputError(f"{self.task} {self.split}: example {ex.id} refers to image {image_id!r}, "
                                     "which has no image file")
                image = self.images[image_id] if paths else None
                if isinstance(image, (str, Path)) and not os.path.isfile(image):
                    raise InputError(f"{self.task} {self.split}: example {ex.id}: image file {image} does not exist"
                                     + (f"; {self.missing_hint}" if self.missing_hint else ""))


class KeyedImages(Mapping):
    """A mapping of image ids whose keys live in ``self.index`` (id -> where to find the image); subclasses read
    an image only in ``__getitem__``, so building one reads nothing."""

    index: dict[str, Any]

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


class ImageView(KeyedImages):
    """``images`` restricted to ``keys``, in their order; nothing is read until an image is asked for."""

    def __init__(self, images: Mapping[str, Any], keys: Iterable[str]):
        self.images, self.index = images, dict.fromkeys(keys)

    def __getitem__(self, key: str):
        if key not in self.index:
            raise KeyError(key)
        return self.images[key]


class Task:
    """A vision-language task: reads its data, picks training targets, and computes its metric.

    Subclasses set ``name``, ``prefix`` (prepended to every source text), ``splits`` and the abilities below, and
    implement ``load_local`` (a data directory, or nothing for a task that ships its data), ``load_hf`` if it reads
    Hugging Face ``datasets``, and ``score``; ``load`` chooses between them.
    """

    name: str = ""
    prefix: str = ""
    # what the task is, for everything that uses a model trained on it (predict, serve, the benches):
    takes_question: bool = True  # each example has a question / statement; False: the image alone (a caption)
    num_images: int = 1  # images per example
    metric: str = "accuracy"  # the number "best checkpoint" selection looks at
    needs_data_dir: bool = True  # False: the task ships its data (easy-vqa)
    splits: tuple[str, ...] = ()
    default_splits: tuple[str, str | None, str] = ("train", "val", "test")  # train, validation, test
    default_model: str = "t5-base_clip-vit-b32"  # the named model config `dept-vl train` uses by default
    skip_bad_lines: bool = False  # JSONL readers skip (and count) malformed lines instead of stopping
    prepare_script: str = ""  # the data_scripts/ script that turns the official download into the layout read
    prepare_args: str = "--raw {root} --out DIR"  # its arguments, {root} the directory given
    generation: dict = {}  # the task's own ``generate`` settings, used wherever its answers are generated

    def load(self, split: str, data_dir: str | Path | None = None) -> TaskData:
        """The split's examples: from Hugging Face ``datasets`` (``hf:<name>`` or a ``save_to_disk`` directory), else
        from the data directory (checked), or from the task's own data; never empty."""
        if is_hf_source(data_dir):
            return check_not_empty(self.load_hf(split, str(data_dir)))
        self.check_split(split)
        return check_not_empty(self.load_local(split, self.data_dir(data_dir) if self.needs_data_dir else None))

    def load_local(self, split: str, root: Path | None) -> TaskData:
        """The examples of ``split`` (checked to be one of ``splits``) from the data directory ``root``."""
        raise NotImplementedError

    def load_hf(self, split: str, source: str) -> TaskData:
        """The examples of ``split`` from ``datasets`` (``hf:<name>`` or a ``save_to_disk`` directory)."""
        raise ConfigError(f"task {self.name!r} does not read Hugging Face datasets ({source})")

    def training_target(self, example: Example, rng: random.Random) -> str:
        """The target text one training step sees (default: the first reference)."""
        return example.targets[0]

    def reference_answer(self, example: Example) -> str:
        """The best prediction for ``example`` (default: its first reference): what scores 1.0 by the task's own
        metric (its contract test checks that)."""
        return example.targets[0]

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        """The task metric(s) of ``predictions`` (example id -> text) over ``examples``."""
        raise NotImplementedError

    def kind(self) -> dict | None:
        """What a run records of the task so that using the run needs not read its data (a user's own data: whether
        it takes a question, images per example); None for a built-in task, which says so itself."""
        return None

    def source(self, text: str) -> str:
        return f"{self.prefix}{text.strip()}"

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            raise ConfigError(f"task {self.name!r} has no split {split!r}; choose from {', '.join(self.splits)}")
        return split

    def prepare_hint(self, root: Path) -> str:
        """What to do about a data directory that lacks a file: the script that prepares it."""
        return (f"is {root} prepared? `python data_scripts/{self.prepare_script} {self.prepare_args.format(root=root)}` "
                "(in the dept-vl repository) writes the layout dept-vl reads; see data_scripts/README.md")

    def data_file(self, root: Path, name: str) -> Path:
        """``root / name``, which must exist (else an InputError saying how to prepare ``root``)."""
        path = root / name
        if not path.is_file():
            raise InputError(f"missing data file {path}; {self.prepare_hint(root)}")
        return path

    def data_dir(self, data_dir: str | Path | None) -> Path:
        if data_dir is None:
            raise ConfigError(f"task {self.name!r} needs --data-dir (see data_scripts/README.md for the layout)")
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise InputError(f"data directory {path} does not exist")
        return path


_TASKS: Registry[type[Task]] = Registry("task")


def register_task(cls):
    """Class decorator: make a Task subclass available by its ``name``."""
    return _TASKS.add(cls.name, cls)


def list_tasks() -> list[str]:
    return sorted(_TASKS.names())


def registered_task(name: str) -> Task:
    """A new instance of the task registered as ``name``."""
    return _TASKS.get(name)()


def require(record: Any, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``record[key]``, or an InputError naming the record and the field that is missing or, with ``kind``, is not of
    that JSON type (booleans are never numbers here)."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {_json_type(record)}")
    if key not in record:
        raise InputError(f"{where}: record has no field {key!r}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,) if kind else ()
    if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise InputError(f"{where}: field {key!r} must be {names}, got {_json_type(value)} {value!r:.40}")
    return value


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def _json_type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)


def check_not_empty(data: TaskData) -> TaskData:
    if not data.examples:
        raise InputError(f"{data.task} split {data.split!r} has no examples")
    return data
