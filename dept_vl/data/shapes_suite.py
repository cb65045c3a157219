"""A small four-task dataset in the official formats, offline: easy-vqa's shape images posed as VQAv2, GQA,
NLVR2 and COCO captions.

Each easy-vqa image holds one shape of one colour. ``write_shapes_suite(root)`` writes, in the layouts the task
loaders read (the ones ``data_scripts/`` make from the real downloads):

    root/vqa/      v2_OpenEnded_mscoco_{train2014,val2014}_questions.json, v2_mscoco_*_annotations.json (ten answers
                   each), karpathy_split.json, images/{train2014,val2014}/COCO_<subtype>_<id>.jpg
    root/gqa/      {train,val,testdev}_balanced_questions.json, images/<imageId>.jpg
    root/nlvr2/    {train,dev,test1}.json (statements about two images), images/<split>/<id>-img{0,1}.png
    root/caption/  dataset_coco.json (Karpathy's format, five captions per image), images/<subtype>/<file>.jpg

with ``examples`` examples per task and split: enough to show that a multi-task run learns every task (the images
are PNGs under the official file names; Pillow reads them by content). Training images come from easy-vqa's train
split, validation and test images from its test split.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

from ..errors import InputError
from .tasks.vqa import coco_image_key

SHAPES = ("circle", "rectangle", "triangle")
ROLES = ("train", "val", "test")
CAPTIONS = ("a {color} {shape}", "a {shape} that is {color}", "a {color} {shape} on a white background",
            "the image shows a {color} {shape}", "one {color} {shape}")


def shape_images(split: str) -> list[tuple[str, str, str]]:
    """(path, shape, colour) of every easy-vqa image of ``split`` (train / test), read off its questions."""
    try:
        import easy_vqa
    except ImportError:
        raise InputError("the easy-vqa package is not installed: pip install easy-vqa==1.0") from None
    texts, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    attributes: dict[int, dict[str, str]] = defaultdict(dict)
    for text, answer, image in zip(texts, answers, image_ids):
        if answer in SHAPES:
            attributes[image]["shape"] = answer
        elif answer not in ("yes", "no") and "color" in text:
            attributes[image]["color"] = answer
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    return [(paths[i], a["shape"], a["color"]) for i, a in sorted(attributes.items()) if len(a) == 2]


def write_shapes_suite(root: str | Path, examples: int = 40, seed: int = 0) -> dict[str, Path]:
    """Write the four tasks under ``root``; return task -> data directory."""
    root, rng = Path(root), random.Random(seed)
    pools = {"train": shape_images("train"), "test": shape_images("test")}
    for pool in pools.values():
        rng.shuffle(pool)
    needed = examples  # at most one image per example and task; each role takes its own images
    images = {"train": pools["train"][:needed], "val": pools["test"][:needed], "test": pools["test"][needed:2 * needed]}
    if any(len(chosen) < needed for chosen in images.values()):
        raise InputError(f"easy-vqa has too few images for {examples} examples per split")
    writers = {"vqa": _write_vqa, "gqa": _write_gqa, "nlvr2": _write_nlvr2, "caption": _write_caption}
    return {task: write(root / task, images, examples, random.Random(f"{seed}-{task}")) for task, write in
            writers.items()}


def _question(shape: str, color: str, rng: random.Random) -> tuple[str, str, str]:
    """(question, answer, kind): what shape, what colour, or a yes/no question (half true)."""
    kind = rng.choice(("shape", "color", "yes/no"))
    if kind == "shape":
        return f"what shape is the {color} object?", shape, kind
    if kind == "color":
        return f"what color is the {shape}?", color, kind
    asked = shape if rng.random() < 0.5 else rng.choice([s for s in SHAPES if s != shape])
    return f"is there a {asked} in the image?", "yes" if asked == shape else "no", kind


def _copy(source: str, target: Path) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(target)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_vqa(out: Path, images: dict, examples: int, rng: random.Random) -> Path:
    subtype_of = {"train": "train2014", "val": "val2014", "test": "val2014"}
    questions = {s: [] for s in ("train2014", "val2014")}
    annotations = {s: [] for s in ("train2014", "val2014")}
    karpathy = {role: [] for role in ROLES}
    for role in ROLES:
        subtype = subtype_of[role]
        for n, (path, shape, color) in enumerate(images[role][:examples]):
            image_id = 1 + ROLES.index(role) * 100_000 + n
            _copy(path, out / "images" / subtype / f"{coco_image_key(subtype, image_id)}.jpg")
            karpathy[role].append(image_id)
            question, answer, kind = _question(shape, color, rng)
            qid = image_id * 10
            questions[subtype].append({"image_id": image_id, "question": question, "question_id": qid})
            annotations[subtype].append({
                "question_id": qid, "image_id": image_id, "answer_type": "yes/no" if kind == "yes/no" else "other",
                "question_type": question.split(" ")[0], "multiple_choice_answer": answer,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]})
    for subtype in questions:
        _write_json(out / f"v2_OpenEnded_mscoco_{subtype}_questions.json", {"questions": questions[subtype]})
        _write_json(out / f"v2_mscoco_{subtype}_annotations.json", {"annotations": annotations[subtype]})
    _write_json(out / "karpathy_split.json", karpathy)
    return out


def _write_gqa(out: Path, images: dict, examples: int, rng: random.Random) -> Path:
    for role, split in zip(ROLES, ("train", "val", "testdev")):
        records = {}
        for n, (path, shape, color) in enumerate(images[role][:examples]):
            image_id = f"{split}{n}"
            _copy(path, out / "images" / f"{image_id}.jpg")
            question, answer, kind = _question(shape, color, rng)
            records[f"{split}-q{n}"] = {"imageId": image_id, "question": question.capitalize(), "answer": answer,
                                        "types": {"structural": "verify" if kind == "yes/no" else "query"}}
        _write_json(out / f"{split}_balanced_questions.json", records)
    return out


def _statement(left: tuple, right: tuple, rng: random.Random) -> tuple[str, bool]:
    """A statement about two (path, shape, colour) images and whether it holds (true about half the time)."""
    want = rng.random() < 0.5
    kind = rng.choice(("left", "right", "both", "same"))
    if kind == "same":
        return "the two shapes have the same color.", left[2] == right[2]
    image = right if kind == "right" else left
    shape = image[1] if want else rng.choice([s for s in SHAPES if s != image[1]])
    if kind == "both":
        return f"both images contain a {shape}.", left[1] == shape == right[1]
    return f"the {kind} image contains a {shape}.", shape == image[1]


def _write_nlvr2(out: Path, images: dict, examples: int, rng: random.Random) -> Path:
    for role, split in zip(ROLES, ("train", "dev", "test1")):
        lines, pool = [], images[role]
        for n in range(examples):
            left, right = pool[n], pool[(n * 7 + 3) % len(pool)]
            sentence, label = _statement(left, right, rng)
            stem = f"{split}-{n}-0"
            for i, image in enumerate((left, right)):
                _copy(image[0], out / "images" / split / f"{stem}-img{i}.png")
            lines.append(json.dumps({"identifier": f"{stem}-0", "sentence": sentence.capitalize(),
                                     "label": str(label)}))
        (out / f"{split}.json").write_text("\n".join(lines) + "\n")
    return out


def _write_caption(out: Path, images: dict, examples: int, rng: random.Random) -> Path:
    records = []
    for role in ROLES:
        subtype = "train2014" if role == "train" else "val2014"
        for n, (path, shape, color) in enumerate(images[role][:examples]):
            cocoid = 1 + ROLES.index(role) * 100_000 + n
            filename = f"{coco_image_key(subtype, cocoid)}.jpg"
            _copy(path, out / "images" / subtype / filename)
            sentences = [{"raw": t.format(color=color, shape=shape).capitalize() + "."} for t in CAPTIONS]
            records.append({"filepath": subtype, "filename": filename, "cocoid": cocoid, "split": role,
                            "sentences": sentences})
    _write_json(out / "dataset_coco.json", {"images": records})
    return out
