"""NLVR2: is a statement true of a pair of images? Two images per example; target ``true`` / ``false``.

Layout (``data_scripts/prepare_nlvr2.py`` builds it from the official repository's JSONL + images)::

    DATA/{train,dev,test1}.json     official JSONL: {"identifier", "sentence", "label": "True"|"False", ...}
    DATA/images/<split>/<identifier without its last -N>-img{0,1}.png
"""

from __future__ import annotations

import logging
from collections import ChainMap
from pathlib import Path
from typing import Sequence

from ...errors import InputError
from ...io import iter_jsonl
from ..metrics import exact_match, grouped_mean
from .base import Example, Task, TaskData, register_task, require
from .hf_datasets import DatasetImages, open_hf_split, require_columns

LABELS = {"true": "true", "false": "false", "1": "true", "0": "false"}  # ints: ClassLabel rows


def image_stem(identifier: str) -> str:
    """``train-10171-0-0`` -> ``train-10171-0``: the official image file prefix of a statement."""
    return identifier.rsplit("-", 1)[0]


def label_text(label, where: str) -> str:
    text = str(label).strip().lower()
    if text not in LABELS:
        raise InputError(f"{where}: label {label!r} is not True/False")
    return LABELS[text]


@register_task
class NLVR2(Task):
    name = "nlvr2"
    prefix = "nlvr: "
    prepare_script = "prepare_nlvr2.py"
    prepare_args = "--raw {root} --images IMAGES --out DIR"
    num_images = 2
    splits = ("train", "dev", "test1")
    default_splits = ("train", "dev", "test1")
    default_model = "t5-base_clip-vit-b32_nlvr2"

    def load_local(self, split: str, root: Path | None) -> TaskData:
        path = self.data_file(root, f"{split}.json")
        examples, images = [], {}
        for number, record in iter_jsonl(path, self.skip_bad_lines, log=logging.getLogger("dept_vl").warning):
            where = f"{path}, line {number}"
            identifier = str(require(record, "identifier", where))
            stem = image_stem(identifier)
            pair = (f"{stem}-img0", f"{stem}-img1")
            for key in pair:
                images[key] = str(root / "images" / split / f"{key}.png")
            examples.append(Example(identifier, pair, self.source(require(record, "sentence", where, str)),
                                    [label_text(require(record, "label", where), where)]))
        return TaskData(self.name, split, examples, images, missing_hint=self.prepare_hint(root))

    def load_hf(self, split: str, source: str) -> TaskData:
        """Rows with ``sentence``, ``label`` and ``left_image`` / ``right_image``; images decoded only when read."""
        rows = open_hf_split(source, split)
        require_columns(rows, ("sentence", "label", "left_image", "right_image"), f"{source} split {split!r}")
        names = ([str(i) for i in rows["identifier"]] if "identifier" in rows.column_names
                 else [f"{split}-{i}" for i in range(len(rows))])
        images = ChainMap(DatasetImages(rows, (f"{n}-left" for n in names), "left_image"),
                          DatasetImages(rows, (f"{n}-right" for n in names), "right_image"))
        examples = [Example(name, (f"{name}-left", f"{name}-right"), self.source(row["sentence"]),
                            [label_text(row["label"], f"{source} row {i}")])
                    for i, (name, row) in enumerate(zip(names, rows.remove_columns(["left_image", "right_image"])))]
        return TaskData(self.name, split, examples, images)

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        scores = [exact_match(predictions.get(ex.id, ""), ex.targets[0], clean=False) for ex in examples]
        return grouped_mean(scores, [None] * len(scores))
