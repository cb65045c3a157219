"""COCO captions, Karpathy split -> the layout ``--task caption`` reads.

    python data_scripts/prepare_coco.py --raw RAW --out DATA/coco [--download] [--copy]

RAW must hold (``--download`` fetches them, about 19 GB):
    RAW/dataset_coco.json                       from caption_datasets.zip (Karpathy)
    RAW/train2014/*.jpg, RAW/val2014/*.jpg      COCO 2014 images
Writes DATA/coco/dataset_coco.json and DATA/coco/images/{train2014,val2014} (symlinks unless --copy).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from _common import download, place, read_json, run, unzip

KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
IMAGE_URLS = {"train2014": "http://images.cocodataset.org/zips/train2014.zip",
              "val2014": "http://images.cocodataset.org/zips/val2014.zip"}


def fetch(raw: Path) -> None:
    if not (raw / "dataset_coco.json").exists():
        unzip(download(KARPATHY_URL, raw / "caption_datasets.zip"), raw)
    for subtype, url in IMAGE_URLS.items():
        if not (raw / subtype).is_dir():
            unzip(download(url, raw / f"{subtype}.zip"), raw)


def convert(raw: Path, out: Path, copy: bool = False) -> dict[str, int]:
    """Place the Karpathy file and the image folders; return the number of images per Karpathy split."""
    dataset = read_json(raw / "dataset_coco.json")
    place(raw / "dataset_coco.json", out / "dataset_coco.json", copy)
    for subtype in sorted({image["filepath"] for image in dataset["images"]}):
        place(raw / subtype, out / "images" / subtype, copy)
    return dict(Counter(image["split"] for image in dataset["images"]))


def main(argv=None) -> None:
    run(__doc__, "caption", fetch, convert, argv)


if __name__ == "__main__":
    main()
