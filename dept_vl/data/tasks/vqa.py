"""VQAv2 on the Karpathy split (as VL-T5 / VL-Adapter) or the official splits; the official VQA accuracy.

Layout (``data_scripts/prepare_vqav2.py`` builds it)::

    DATA/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json
    DATA/v2_mscoco_{train2014,val2014}_annotations.json
    DATA/karpathy_split.json            {"train": [coco image ids], "val": [...], "test": [...]}
    DATA/images/{train2014,val2014}/COCO_<subtype>_<12-digit id>.jpg
"""

from __future__ import annotations

import os
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from ...errors import InputError
from ...io import read_data_json
from ..json_stream import iter_json_list
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
        Images are read from ``images/<subtype>`` (prepared) or ``<subtype>`` (the official download). Both files
        are read one record at a time: the annotations (360 MB for train2014) are never held whole."""
        q_path = self.data_file(root, f"v2_OpenEnded_mscoco_{subtype}_questions.json")
        a_path = self.data_file(root, f"v2_mscoco_{subtype}_annotations.json")
        annotations = self._annotations(a_path)
        folder = root / "images" / subtype if (root / "images" / subtype).is_dir() else root / subtype
        prefix = f"{folder}{os.sep}"
        keys: dict[int, str] = {}  # one key string per image, shared by its questions and the image map
        for q in iter_json_list(q_path, "questions"):
            record = _well_formed(q, annotations)
            if record is None:  # the slow path, only to name what is wrong
                record = self._checked(q, annotations, str(q_path), str(a_path))
            image_id, qid, question, (answers, meta) = record
            if keep is not None and image_id not in keep:
                continue
            if image_id not in keys:
                keys[image_id] = key = coco_image_key(subtype, image_id)
                images[key] = f"{prefix}{key}.jpg"
            examples.append(Example(str(qid), (keys[image_id],), self.source(question), answers, meta=meta))

    @staticmethod
    def _annotations(path: Path) -> dict:
        """question id -> (the ten answers, meta) of every annotation in ``path``; the rest of each record is
        dropped as it is read."""
        annotations = {}
        for ann in iter_json_list(path, "annotations"):
            try:
                qid, answers = ann["question_id"], [sys.intern(a["answer"]) for a in ann["answers"]]
            except (KeyError, TypeError):  # the slow path, only to name what is wrong
                qid = require(ann, "question_id", str(path), (int, str))
                answers = [require(a, "answer", f"{path}, question {qid}", str)
                           for a in require(ann, "answers", f"{path}, question {qid}", list)]
            annotations[qid] = answers, _meta(ann, answers)
        return annotations

    @staticmethod
    def _checked(q, annotations: dict, q_path: str, a_path: str) -> tuple:
        """A question record checked field by field: an InputError naming the file, question and field."""
        where = f"{q_path}, question {q.get('question_id', '?') if isinstance(q, dict) else '?'}"
        image_id = require(q, "image_id", where, int)
        qid = require(q, "question_id", where, (int, str))
        if qid not in annotations:
            raise InputError(f"{a_path}: no annotation for question {qid}")
        return image_id, qid, require(q, "question", where, str), annotations[qid]

    def load_hf(self, split: str, source: str) -> TaskData:
        """HuggingFaceM4/VQAv2-style rows: question, question_id, image_id, answers[{answer}], answer_type, image;
        images decoded only when read."""
        rows = open_hf_split(source, split)
        require_columns(rows, ("question_id", "image_id", "question", "answers", "image"), f"{source} split {split!r}")
        images = DatasetImages(rows, (f"coco_{i}" for i in rows["image_id"]))
        examples = []
        for row in rows.remove_columns("image"):
            answers = [sys.intern(require(a, "answer", f"{source}, question {row['question_id']}", str))
                       for a in require(row, "answers", source, list)]
            examples.append(Example(str(row["question_id"]), (f"coco_{row['image_id']}",),
                                    self.source(row["question"]), answers, meta=_meta(row, answers)))
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



def _well_formed(q, annotations: dict) -> tuple | None:
    """(image_id, question_id, question, (answers, meta)) of a valid question record, else None: the fast path for
    the 600k questions of VQAv2, no message built unless something is wrong."""
    try:
        image_id, qid, question = q["image_id"], q["question_id"], q["question"]
        annotation = annotations[qid]
    except (KeyError, TypeError):
        return None
    if type(image_id) is not int or type(question) is not str:
        return None
    return image_id, qid, question, annotation


def _meta(ann: dict, answers: list[str]) -> dict:
    """What an example keeps of its annotation; strings that repeat across questions (answers, types) are interned:
    a VQAv2-sized split holds each once."""
    return {"answer_type": _intern(ann.get("answer_type")), "question_type": _intern(ann.get("question_type")),
            "answer": _intern(ann.get("multiple_choice_answer", answers[0] if answers else ""))}


def _intern(value):
    return sys.intern(value) if type(value) is str else value
