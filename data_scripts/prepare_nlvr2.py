"""NLVR2 -> the layout ``--task nlvr2`` reads.

    python data_scripts/prepare_nlvr2.py --raw RAW --images IMAGES --out DATA/nlvr2 [--download] [--copy]

RAW holds the official statements (``--download`` fetches them from github.com/lil-lab/nlvr):
    RAW/{train,dev,test1}.json       JSONL: identifier, sentence, label, directory (train), ...
IMAGES holds the images, which the NLVR2 authors hand out on request (or fetch the *_url fields yourself):
    IMAGES/train/<directory>/<id>-img{0,1}.png, IMAGES/dev/<id>-img{0,1}.png, IMAGES/test1/...
Writes DATA/nlvr2/<split>.json with only the statements whose two images exist (the count dropped is printed)
and flattens the images to DATA/nlvr2/images/<split>/<id>-img{0,1}.png.
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import download, place, run

URL = "https://raw.githubusercontent.com/lil-lab/nlvr/master/nlvr2/data/"
SPLITS = ("train", "dev", "test1")


def image_stem(identifier: str) -> str:
    return identifier.rsplit("-", 1)[0]


def fetch(raw: Path) -> None:
    for split in SPLITS:
        download(URL + f"{split}.json", raw / f"{split}.json")


def convert(raw: Path, images: Path, out: Path, copy: bool = False) -> dict[str, dict[str, int]]:
    """Keep statements whose two images exist, flatten image folders; return kept / dropped per split."""
    report = {}
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if not (raw / f"{split}.json").exists():
            continue
        kept, dropped = [], 0
        for line in (raw / f"{split}.json").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            stem = image_stem(record["identifier"])
            folder = images / split / str(record["directory"]) if "directory" in record else images / split
            pair = [folder / f"{stem}-img{i}.png" for i in (0, 1)]
            if not all(p.exists() for p in pair):
                dropped += 1
                continue
            for p in pair:
                place(p, out / "images" / split / p.name, copy)
            kept.append(line)
        (out / f"{split}.json").write_text("\n".join(kept) + "\n", encoding="utf-8")
        report[split] = {"kept": len(kept), "dropped": dropped}
    return report


def main(argv=None) -> None:
    run(__doc__, "nlvr2", fetch, convert, argv, with_images=True)


if __name__ == "__main__":
    main()
