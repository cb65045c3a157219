"""VQAv2 on the Karpathy split (as VL-T5 / VL-Adapter) or the official splits; the official VQA accuracy.

Layout (``data_scripts/prepare_vqav2.py`` builds it)::

    DATA/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json
    DATA/v2_mscoco_{train2014,val2014}_annotations.json
    DATA/karpathy_split.json            {"train": [coco image ids], "val": [...], "test": [...]}
    DATA/images/{train2014,val2014}/COCO_<subtype>_<12-digit id>.jpg
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from ...errors import InputError
from ...io import read_data_json
from ..metrics import grouped_mean, vqa_accuracy
from .base import Example, Task, TaskData, register_task, require
from .hf_datasets import DatasetImages, open_hf_split, require_columns

SUBTYPES = ("train2014", "val2014")


def coco_image_key(subtype: str, image_id: int) -> str:
    """The COCO file stem, e.g. ``COCO_val2014_000000391895``: VQAv2's image key. COCO captions key an image by the
    stem of its Karpathy file name, which is the same string, so the two tasks share cached features."""
    return f"COCO_{subtype}_{int(image_id):012d}"


@register_task
class VQAv2(Task):
    name = "vqa"
    prefix = "vqa: "
    splits = ("train", "val", "test", "train2014", "val2014")
    prepare_script = "prepare_vqav2.py"
    target_sampling = "frequency"  # or "most_common": always the annotators' most frequent answer

    def load_local(self, split: str, root: Path | None) -> TaskData:
        keep = None if split in SUBTYPES else self._karpathy_ids(root, split)
        examples, images = [], {}
        for subtype in (split,) if split in SUBTYPES else SUBTYPES:
            self._load_subtype(root, subtype, keep, examples, images)
        return TaskData(self.name, split, examples, images, missing_hint=self.prepare_hint(root))

    def _karpathy_ids(self, root: Path, split: str) -> set[int]:
        """The COCO image ids of a Karpathy split (``karpathy_split.json``, written by prepare_vqav2.py)."""
        path = root / "karpathy_split.json"
        if not path.is_file():
            raise InputError(f"missing data file {path}: the Karpathy split needs {root} prepared by `python "
                             f"data_scripts/prepare_vqav2.py --raw {root} --out DIR` (in the dept-vl repository); or "
                             "use the official splits of the download as it is: --train-split train2014 --eval-split "
                             "val2014 --test-split val2014")
        ids = require(read_data_json(path), split, str(path), list)
        return {require({"image_id": i}, "image_id", f"{path}, {split}", int) for i in ids}

    def _load_subtype(self, root: Path, subtype: str, keep: set[int] | None, examples: list, images: dict) -> None:
        """The questions of one official file pair (train2014 / val2014) whose image is in ``keep`` (default all).
        Images are read from ``images/<subtype>`` (prepared) or ``<subtype>`` (the official download)."""
        q_path = self.data_file(root, f"v2_OpenEnded_mscoco_{subtype}_questions.json")
        a_path = self.data_file(root, f"v2_mscoco_{subtype}_annotations.json")
        questions = require(read_data_json(q_path), "questions", str(q_path), list)
        annotations = {require(a, "question_id", str(a_path)): a
                       for a in require(read_data_json(a_path), "annotations", str(a_path), list)}
        folder = root / "images" / subtype if (root / "images" / subtype).is_dir() else root / subtype
        for q in questions:
            where = f"{q_path}, question {q.get('question_id', '?') if isinstance(q, dict) else '?'}"
            image_id = require(q, "image_id", where, int)
            if keep is not None and image_id not in keep:
                continue
            qid = require(q, "question_id", where)
            if qid not in annotations:
                raise InputError(f"{a_path}: no annotation for question {qid}")
            key = coco_image_key(subtype, image_id)
            images[key] = str(folder / f"{key}.jpg")
            examples.append(self._example(str(qid), key, require(q, "question", where, str), annotations[qid],
                                          str(a_path)))

    def _example(self, qid: str, image_key: str, question: str, ann: dict, where: str) -> Example:
        answers = [require(a, "answer", f"{where}, question {qid}", str) for a in require(ann, "answers", where, list)]
        return Example(qid, (image_key,), self.source(question), answers,
                       meta={"answer_type": ann.get("answer_type"), "question_type": ann.get("question_type"),
                             "answer": ann.get("multiple_choice_answer", answers[0] if answers else "")})

    def load_hf(self, split: str, source: str) -> TaskData:
        """HuggingFaceM4/VQAv2-style rows: question, question_id, image_id, answers[{answer}], answer_type, image;
        images decoded only when read."""
        rows = open_hf_split(source, split)
        require_columns(rows, ("question_id", "image_id", "question", "answers", "image"), f"{source} split {split!r}")
        images = DatasetImages(rows, (f"coco_{i}" for i in rows["image_id"]))
        examples = [self._example(str(row["question_id"]), f"coco_{row['image_id']}", row["question"], row, source)
                    for row in rows.remove_columns("image")]
        return TaskData(self.name, split, examples, images)

    def training_target(self, example: Example, rng: random.Random) -> str:
        if self.target_sampling == "most_common" or not example.targets:
            return example.meta["answer"]
        return rng.choice(example.targets)  # uniform over the ten answers = sampling by frequency

    def reference_answer(self, example: Example) -> str:
        """The answer most annotators gave (the official accuracy counts matches with the ten answers)."""
        return Counter(example.targets).most_common(1)[0][0] if example.targets else example.meta["answer"]

    def score(self, predictions: dict[str, str], examples: Sequence[Example]) -> dict[str, float]:
        scores = [vqa_accuracy(predictions.get(ex.id, ""), ex.targets) for ex in examples]
        return grouped_mean(scores, [ex.meta.get("answer_type") for ex in examples])

