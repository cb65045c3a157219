"""GQA balanced questions -> the layout ``--task gqa`` reads.

    python data_scripts/prepare_gqa.py --raw RAW --out DATA/gqa [--download] [--copy]

RAW must hold (``--download`` fetches them, about 21 GB):
    RAW/{train,val,testdev}_balanced_questions.json   from questions1.2.zip
    RAW/images/*.jpg                                   from images.zip
Writes DATA/gqa/{train,val,testdev}_balanced_questions.json and DATA/gqa/images.
"""

from __future__ import annotations

from pathlib import Path

from _common import download, place, read_json, run, unzip

URL = "https://downloads.cs.stanford.edu/nlp/data/gqa/"
SPLITS = ("train", "val", "testdev")


def fetch(raw: Path) -> None:
    if not (raw / "testdev_balanced_questions.json").exists():
        unzip(download(URL + "questions1.2.zip", raw / "questions1.2.zip"), raw)
    if not (raw / "images").is_dir():
        unzip(download(URL + "images.zip", raw / "images.zip"), raw)


def convert(raw: Path, out: Path, copy: bool = False) -> dict[str, int]:
    """Place the balanced question files and the images; return questions per split.

    Every question's image must exist (a missing one is reported with its question id).
    """
    counts = {}
    for split in SPLITS:
        questions = read_json(raw / f"{split}_balanced_questions.json")
        for qid, question in questions.items():
            if not (raw / "images" / f"{question['imageId']}.jpg").exists():
                raise FileNotFoundError(f"{split} question {qid}: no image {question['imageId']}.jpg in {raw}/images")
        place(raw / f"{split}_balanced_questions.json", out / f"{split}_balanced_questions.json", copy)
        counts[split] = len(questions)
    place(raw / "images", out / "images", copy)
    return counts


def main(argv=None) -> None:
    run(__doc__, "gqa", fetch, convert, argv)


if __name__ == "__main__":
    main()
