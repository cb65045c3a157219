"""GQA balanced questions: train on train (or train+val), evaluate on testdev; exact match after VQA cleaning.

Layout (``data_scripts/prepare_gqa.py`` builds it)::

    DATA/{train,val,testdev}_balanced_questions.json   {"<qid>": {"imageId", "question", "answer", "types"}}
    DATA/images/<imageId>.jpg
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..metrics import exact_match, grouped_mean
from .base import Example, Task, TaskData, check_not_empty, read_json_file, register_task, require


@register_task
class GQA(Task):
    name = "gqa"
    prefix = "gqa: "
    splits = ("train", "val", "train+val", "testdev")
    default_splits = ("train", "val", "testdev")

    def load(self, split: str, data_dir: str | Path | None = None) -> TaskData:
        self.check_split(split)
        root = self.data_dir(data_dir)
        examples, images = [], {}
        for part in split.split("+"):
            path = root / f"{part}_balanced_questions.json"
            records = read_json_file(path)
            if not isinstance(records, dict):
                raise InputError(f"{path}: expected a JSON object of question id -> question")
            for qid, q in records.items():
                where = f"{path}, question {qid}"
                image_id = str(require(q, "imageId", where))
                images[image_id] = str(root / "images" / f"{image_id}.jpg")
                examples.append(Example(str(qid), (image_id,), self.source(require(q, "question", where)),
                                        [str(require(q, "answer", where))],
                                        meta={"type": (q.get("types") or {}).get("structural")}))
        return check_not_empty(TaskData(self.name, split, examples, images))

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        scores = [exact_match(predictions.get(ex.id, ""), ex.targets[0]) for ex in examples]
        return grouped_mean(scores, [ex.meta.get("type") for ex in examples])
