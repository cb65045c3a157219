"""COCO captions on the Karpathy split; BLEU-4 and CIDEr-D as pycocoevalcap computes them.

Layout (``data_scripts/prepare_coco.py`` builds it)::

    DATA/dataset_coco.json      Karpathy's split file: images[{filepath, filename, cocoid, split, sentences}]
    DATA/images/{train2014,val2014}/COCO_<subtype>_<12-digit id>.jpg
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from ..json_stream import iter_json_list
from ..metrics import caption_metrics
from .base import Example, Task, TaskData, register_task, require
from .hf_datasets import DatasetImages, open_hf_split, require_columns

KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


@register_task
class COCOCaption(Task):
    name = "caption"
    prefix = "caption:"
    prepare_script = "prepare_coco.py"
    splits = tuple(KARPATHY_SPLITS)
    metric = "CIDEr"
    takes_question = False  # a caption is said of the image alone
    # A sentence, not a word: no trigram twice. Without it a frozen decoder tends to loop on one word ("a gray gray
    # gray ..."); in the four-task shapes suite this took captions from CIDEr 0.43 to 0.73 (0.68 -> 0.78 alone).
    generation = {"no_repeat_ngram_size": 3}

    def source(self, text: str = "") -> str:
        return self.prefix if not text.strip() else f"{self.prefix} {text.strip()}"

    def load_local(self, split: str, root: Path | None) -> TaskData:
        path = self.data_file(root, "dataset_coco.json")
        return self._examples(split, iter_json_list(path, "images"), str(path), root=root)

    def _examples(self, split: str, records, where: str, root: Path | None = None, images=None) -> TaskData:
        """Examples of ``split`` from Karpathy-style records; images are files under ``root`` or ``images``."""
        examples, paths = [], {}
        for i, record in enumerate(records):
            if require(record, "split", f"{where}, image {i}") not in KARPATHY_SPLITS[split]:
                continue
            filename = str(require(record, "filename", f"{where}, image {i}"))
            key = Path(filename).stem
            if root is not None:
                paths[key] = str(root / "images" / str(record.get("filepath", "")) / filename)
            captions = [require(s, "raw", where, str) if isinstance(s, dict) else str(s)
                        for s in require(record, "sentences", f"{where}, image {i}", list)]
            examples.append(Example(str(record.get("cocoid", key)), (key,), self.source(), captions))
        hint = self.prepare_hint(root) if root is not None else ""
        return TaskData(self.name, split, examples, paths if images is None else images, hint)

    def load_hf(self, split: str, source: str) -> TaskData:
        """yerevann/coco-karpathy-style rows (filepath, filename, sentences, split, cocoid) with an ``image``;
        images decoded only when read."""
        rows = open_hf_split(source, split)
        require_columns(rows, ("filename", "sentences", "image"), f"{source} split {split!r}")
        images = DatasetImages(rows, (Path(f).stem for f in rows["filename"]))
        records = (dict(r, split=KARPATHY_SPLITS[split][0]) for r in rows.remove_columns("image"))
        return self._examples(split, records, source, images=images)

    def training_target(self, example: Example, rng: random.Random) -> str:
        return rng.choice(example.targets)

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        return caption_metrics({ex.id: predictions.get(ex.id, "") for ex in examples},
                               {ex.id: ex.targets for ex in examples})
