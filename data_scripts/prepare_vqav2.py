"""VQAv2 with the Karpathy split of VL-T5 / VL-Adapter -> the layout ``--task vqa`` reads.

    python data_scripts/prepare_vqav2.py --raw RAW --out DATA/vqa [--download] [--copy]

RAW must hold (``--download`` fetches them, about 20 GB):
    RAW/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json
    RAW/v2_mscoco_{train2014,val2014}_annotations.json
    RAW/dataset_coco.json                       Karpathy's split (caption_datasets.zip)
    RAW/train2014/*.jpg, RAW/val2014/*.jpg      COCO 2014 images
Writes the question / annotation files, DATA/vqa/karpathy_split.json ({"train", "val", "test"}: COCO image ids;
Karpathy's "restval" goes to train) and DATA/vqa/images/{train2014,val2014}.
"""

from __future__ import annotations

from pathlib import Path

from _common import download, place, read_json, run, unzip, write_json
from prepare_coco import fetch as fetch_coco

VQA_URL = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/"
ARCHIVES = ["v2_Questions_Train_mscoco.zip", "v2_Questions_Val_mscoco.zip",
            "v2_Annotations_Train_mscoco.zip", "v2_Annotations_Val_mscoco.zip"]
SUBTYPES = ("train2014", "val2014")
KARPATHY_TO_SPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def karpathy_image_splits(dataset_coco: dict) -> dict[str, list[int]]:
    """COCO image ids per split, from Karpathy's ``dataset_coco.json`` (restval joins train)."""
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for image in dataset_coco["images"]:
        splits[KARPATHY_TO_SPLIT[image["split"]]].append(int(image["cocoid"]))
    return {name: sorted(ids) for name, ids in splits.items()}


def fetch(raw: Path) -> None:
    for archive in ARCHIVES:
        unzip(download(VQA_URL + archive, raw / archive), raw)
    fetch_coco(raw)  # Karpathy's split file and the COCO 2014 images


def convert(raw: Path, out: Path, copy: bool = False) -> dict[str, int]:
    """Place the official files and images, write the Karpathy split; return questions per split."""
    splits = karpathy_image_splits(read_json(raw / "dataset_coco.json"))
    write_json(out / "karpathy_split.json", splits)
    image_split = {i: name for name, ids in splits.items() for i in ids}
    counts = {name: 0 for name in splits}
    for subtype in SUBTYPES:
        for name in (f"v2_OpenEnded_mscoco_{subtype}_questions.json", f"v2_mscoco_{subtype}_annotations.json"):
            place(raw / name, out / name, copy)
        place(raw / subtype, out / "images" / subtype, copy)
        for question in read_json(raw / f"v2_OpenEnded_mscoco_{subtype}_questions.json")["questions"]:
            if question["image_id"] in image_split:
                counts[image_split[question["image_id"]]] += 1
    return counts


def main(argv=None) -> None:
    run(__doc__, "vqa", fetch, convert, argv)


if __name__ == "__main__":
    main()
