"""Write easy-vqa questions in every data format `dept-vl train --data` reads (the files under examples/ are this
script's output for a few questions; tests and compare_formats.py call ``write_formats`` for more).

    python examples/make_examples.py --out DIR --train 1000 --test 200     # DIR/<format>/ for each format
    python examples/make_examples.py --out examples    # rewrites the tracked examples/<format>/ (24 + 8 questions)

``--out`` is required: the script never writes over the repository's own examples unless told to.

easy-vqa (MIT) ships its images and questions on PyPI; each format's folder holds the images it refers to.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

FORMATS = ("simple-jsonl", "simple-json", "llava", "messages", "csv", "parquet", "imagefolder", "hf")


def easyvqa_questions(split: str, indices=None) -> list[dict]:
    """``{"image": path, "question", "answer", "type"}`` of easy-vqa's ``split`` (its examples at ``indices``)."""
    import easy_vqa
    from dept_vl.data.tasks.easyvqa import question_type

    texts, answers, images = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    rows = [{"image": paths[i], "question": q, "answer": a, "type": question_type(a)}
            for q, a, i in zip(texts, answers, images)]
    return rows if indices is None else [rows[i] for i in indices]


def _copy_images(rows: list[dict], folder: Path) -> list[dict]:
    """The rows with their images copied into ``folder/images`` and named relative to ``folder``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        source = Path(row["image"])
        name = f"images/{source.parent.parent.name}-{source.name}"  # easy-vqa's train/ and test/ share file names
        if not (folder / name).exists():
            shutil.copy(row["image"], folder / name)
        out.append({**row, "image": name})
    return out


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write_format(fmt: str, folder: Path, name: str, rows: list[dict]) -> Path:
    """``rows`` as ``folder/<name>.<ext>`` in format ``fmt`` (the images beside it); the path to pass --data."""
    if fmt == "imagefolder":
        target = folder / name
        rows = _copy_images(rows, target)
        _jsonl(target / "metadata.jsonl", [{"file_name": r["image"], "question": r["question"],
                                           "answer": r["answer"], "type": r["type"]} for r in rows])
        return target
    rows = _copy_images(rows, folder)
    if fmt == "simple-jsonl":
        _jsonl(folder / f"{name}.jsonl", rows)
        return folder / f"{name}.jsonl"
    if fmt == "simple-json":
        (folder / f"{name}.json").write_text(json.dumps(rows, indent=1))
        return folder / f"{name}.json"
    if fmt == "llava":
        conversations = [{"id": f"{name}-{i}", "image": r["image"], "conversations": [
            {"from": "human", "value": f"<image>\n{r['question']}"}, {"from": "gpt", "value": r["answer"]}]}
            for i, r in enumerate(rows)]
        (folder / f"{name}.json").write_text(json.dumps(conversations, indent=1))
        return folder / f"{name}.json"
    if fmt == "messages":
        _jsonl(folder / f"{name}.jsonl", [{"messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r["question"]}]},
            {"role": "assistant", "content": r["answer"]}], "images": [r["image"]]} for r in rows])
        return folder / f"{name}.jsonl"
    if fmt in ("csv", "parquet"):
        columns = ("image", "question", "answer", "type")
        if fmt == "csv":
            with open(folder / f"{name}.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, columns)
                writer.writeheader()
                writer.writerows({c: r[c] for c in columns} for r in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({c: [r[c] for r in rows] for c in columns}), folder / f"{name}.parquet")
        return folder / f"{name}.{fmt}"
    if fmt == "hf":
        import datasets

        features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                      "answer": datasets.Value("string"), "type": datasets.Value("string")})
        table = {c: [str(folder / r[c]) if c == "image" else r[c] for r in rows] for c in features}
        datasets.Dataset.from_dict(table, features=features).save_to_disk(str(folder / name))
        return folder / name
    raise ValueError(f"unknown format {fmt!r}")


def write_formats(out: Path, train: list[dict], test: list[dict]) -> dict[str, tuple[Path, Path]]:
    """Every format: format -> (train data, test data) under ``out/<format>/``."""
    return {fmt: (write_format(fmt, out / fmt, "train", train), write_format(fmt, out / fmt, "test", test))
            for fmt in FORMATS}


def multi_turn(out: Path, rows: list[dict]) -> Path:
    """The questions about each image as one LLaVA conversation (several answer turns: one example each, the turns
    before it as context)."""
    rows = _copy_images(rows, out)
    by_image: dict[str, list[dict]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    records = [{"id": f"chat-{n}", "image": image, "conversations": [
        turn for i, r in enumerate(group) for turn in ({"from": "human", "value": ("<image>\n" if i == 0 else "")
                                                        + r["question"]}, {"from": "gpt", "value": r["answer"]})]}
        for n, (image, group) in enumerate(by_image.items())]
    (out / "conversations.json").write_text(json.dumps(records, indent=1))
    return out / "conversations.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", required=True, help="where the format folders go (examples: the tracked ones)")
    parser.add_argument("--train", type=int, default=24, help="training questions (easy-vqa's first)")
    parser.add_argument("--test", type=int, default=8, help="test questions (easy-vqa's first)")
    args = parser.parse_args()
    out = Path(args.out)
    paths = write_formats(out, easyvqa_questions("train")[: args.train], easyvqa_questions("test")[: args.test])
    multi_turn(out / "llava-multi-turn", easyvqa_questions("train")[: args.train])
    for fmt, (train, test) in paths.items():
        print(f"{fmt:>13}: dept-vl train --data {train} --test-data {test}")


if __name__ == "__main__":
    main()
