"""GQA balanced questions: train on train (or train+val), evaluate on testdev; exact match after VQA cleaning.

Layout (``data_scripts/prepare_gqa.py`` builds it)::

    DATA/{train,val,testdev}_balanced_questions.json   {"<qid>": {"imageId", "question", "answer", "types"}}
    DATA/images/<imageId>.jpg

or Hugging Face ``datasets``: ``hf:lmms-lab/GQA`` (questions in the ``<split>_balanced_instructions``
configurations, images in ``<split>_balanced_images``, joined on ``imageId`` = ``id``), or a ``save_to_disk``
directory whose rows hold ``question``, ``answer``, ``imageId`` and an ``image`` (optional ``id``, ``types``).
"""

from __future__ import annotations

from collections import ChainMap
from pathlib import Path
from typing import Sequence

from ...errors import InputError
from ..json_stream import iter_json_object
from ..metrics import exact_match, grouped_mean
from .base import Example, Task, TaskData, register_task, require
from .hf_datasets import DatasetImages, open_hf_split, require_columns


@register_task
class GQA(Task):
    name = "gqa"
    prefix = "gqa: "
    prepare_script = "prepare_gqa.py"
    splits = ("train", "val", "train+val", "testdev")
    default_splits = ("train", "val", "testdev")

    def load_local(self, split: str, root: Path | None) -> TaskData:
        examples, images = [], {}
        for part in split.split("+"):
            path = self.data_file(root, f"{part}_balanced_questions.json")
            for qid, q in iter_json_object(path, "a JSON object of question id -> question"):  # 1.1 GB for train
                example = self._example(str(qid), q, f"{path}, question {qid}")
                images[example.image_ids[0]] = str(root / "images" / f"{example.image_ids[0]}.jpg")
                examples.append(example)
        return TaskData(self.name, split, examples, images, missing_hint=self.prepare_hint(root))

    def load_hf(self, split: str, source: str) -> TaskData:
        """Each part of ``split`` (``train+val``: two) from ``datasets``; images decoded only when read."""
        examples, images, hub = [], [], source.startswith("hf:")
        for part in split.split("+"):
            rows = open_hf_split(source, part, f"{part}_balanced_instructions" if hub else None)
            where = f"{source} split {part!r}"
            require_columns(rows, ("question", "answer", "imageId"), where)
            if "image" in rows.column_names:
                images.append(DatasetImages(rows, rows["imageId"]))
                rows = rows.remove_columns("image")
            elif hub:
                pictures = open_hf_split(source, part, f"{part}_balanced_images")
                require_columns(pictures, ("id", "image"), f"{source} images, split {part!r}")
                images.append(DatasetImages(pictures, pictures["id"]))
            else:
                raise InputError(f"{where}: rows have no column 'image'")
            examples += [self._example(str(q.get("id") or f"{part}-{i}"), q, f"{where}, row {i}")
                         for i, q in enumerate(rows)]
        return TaskData(self.name, split, examples, ChainMap(*images))

    def _example(self, qid: str, q: dict, where: str) -> Example:
        return Example(qid, (str(require(q, "imageId", where)),), self.source(require(q, "question", where, str)),
                       [str(require(q, "answer", where))], meta={"type": (q.get("types") or {}).get("structural")})

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        scores = [exact_match(predictions.get(ex.id, ""), ex.targets[0]) for ex in examples]
        return grouped_mean(scores, [ex.meta.get("type") for ex in examples])
