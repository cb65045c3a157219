"""``dept-vl bench --data-scale``: does training memory stay flat as the feature cache grows?

On generated caches (``--data-scale-images``, default 5k / 20k / 100k images of 50 x 768 float16 features, the
CLIP ViT-B/32 shape; ~7.7 GB at 100k) it measures, each in fresh processes (``data_worker``):

- the peak RSS of a DePT training run (fixed steps, batch 64) on each cache;
- the combined proportional set size (PSS) of two training processes under ``accelerate launch`` (CPU, gloo) on
  the largest cache, against one process: the features live in the page cache they share, not in each process;
- the batches per second the data path delivers against the training step's rate at the t5-base shape;
- feature-cache build throughput (``dept-vl features``) with one process and with two.

``dept-vl bench --index-scale`` measures, in a fresh process, what reading at scale costs before the first batch:
opening the index of a 500k-image cache and loading a VQAv2-size task (658k generated questions, both splits).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from ..data.feature_cache import FeatureCache
from .speed import BenchConfig, build_backbone

VQAV2_QUESTIONS = {"train2014": 443_757, "val2014": 214_354}  # the official splits' sizes
SIGNATURE = {"encoder": "synthetic-clip-vit-b32-shape", "weights": "random", "image_size": 224, "pool_tokens": None}


def make_cache(root: Path, images: int, tokens: int = 50, dim: int = 768, dtype: str = "float16",
               shard_size: int = 1024) -> FeatureCache:
    """A cache of ``images`` generated feature rows (reused when it is there already)."""
    cache = FeatureCache(root, {**SIGNATURE, "num_tokens": tokens, "feature_dim": dim}, dtype=dtype)
    if len(cache) >= images:
        return cache
    generator = torch.Generator().manual_seed(0)
    block = torch.randn(64, tokens, dim, generator=generator)  # rows are drawn from a small block: fast to make
    for start in range(len(cache), images, shard_size):
        ids = [f"img{i:07d}" for i in range(start, min(images, start + shard_size))]
        rows = torch.arange(start, start + len(ids))
        cache.add_shard(ids, block[rows % 64] + (rows % 997).view(-1, 1, 1) * 1e-3)
    return cache


def launched(module_args: list[str], processes: int) -> tuple[list[str], dict]:
    """(argv, env) running ``python *module_args``, under ``accelerate launch`` on the CPU (gloo) for several
    processes, each with its share of the cores."""
    env = dict(os.environ)
    if processes > 1:
        module_args = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *module_args]
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // processes)))
    return [sys.executable, *module_args], env


def make_vqav2(root: Path, questions: dict[str, int], seed: int = 0) -> Path:
    """VQAv2's question and annotation files for each split in ``questions`` (split -> count), with the official
    records' fields and shapes (ten answers each); reused when they are there already."""
    rng = random.Random(seed)
    words = "what is the color of man woman dog cat table on in how many are there this".split()
    answers = ["yes", "no", "2", "1", "white", "red", "blue", "black", "dog", "tennis"] + [f"a{i}" for i in range(3000)]
    root.mkdir(parents=True, exist_ok=True)
    for number, (split, count) in enumerate(questions.items(), 1):
        q_path = root / f"v2_OpenEnded_mscoco_{split}_questions.json"
        a_path = root / f"v2_mscoco_{split}_annotations.json"
        if a_path.is_file():
            continue
        records = [(number * 10**9 + i, rng.randrange(1, 600_000), [rng.choice(answers) for _ in range(10)])
                   for i in range(count)]
        qs = [{"image_id": image, "question": " ".join(rng.choices(words, k=rng.randint(4, 9))) + "?",
               "question_id": q} for q, image, _ in records]
        q_path.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_subtype": split, "questions": qs}))
        anns = [{"question_type": "what is the", "multiple_choice_answer": said[0], "image_id": image,
                 "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(said)],
                 "answer_type": "other", "question_id": q} for q, image, said in records]
        a_path.write_text(json.dumps({"info": {}, "data_subtype": split, "annotations": anns, "data_type": "mscoco"}))
    return root


def run_index_scale(workdir: Path, images: int, questions: int, log=print) -> dict:
    """Opening the index of an ``images``-image cache and loading ``questions`` VQAv2 questions (split as the
    official train2014 / val2014 are), in a fresh process; the JSON-able report."""
    total = sum(VQAV2_QUESTIONS.values())
    counts = {"train2014": questions * VQAV2_QUESTIONS["train2014"] // total}
    counts["val2014"] = questions - counts["train2014"]
    log(f"index scale: a cache of {images} images (1 x 8 features: the index does not depend on them) ...")
    cache = make_cache(workdir / f"index-cache-{images}", images, tokens=1, dim=8)
    log(f"index scale: {questions} VQAv2-shaped questions ...")
    vqa = make_vqav2(workdir / f"vqa-{questions}", counts)
    (report,) = worker(cache.root, "none", workdir / "out-index", 0, 1, mode="load", vqa=vqa)
    report["json_mb"] = sum(p.stat().st_size for p in vqa.glob("*.json")) / 2**20
    return report


def format_index_scale(report: dict) -> str:
    lines = ["| loading | items | seconds | peak RSS added | RSS held after |", "|---|---:|---:|---:|---:|"]
    task = f"VQAv2 questions ({report['json_mb']:.0f} MB of JSON)"
    for name, what in (("index", "feature-cache index"), ("task", task)):
        run = report[name]
        lines.append(f"| {what} | {run['items']:,} | {run['seconds']:.1f} | {run['peak_mb']:.0f} MB | "
                     f"{run['held_mb']:.0f} MB |")
    return "\n".join(lines)


def worker(cache: Path, backbone: str, out: Path, steps: int, batch_size: int, mode: str = "train",
           processes: int = 1, vqa: Path | None = None) -> list[dict]:
    """Run ``data_worker`` (under ``accelerate launch`` for several processes); its reports, one per process."""
    args = ["-m", "dept_vl.bench.data_worker", "--cache", str(cache), "--backbone", backbone, "--steps", str(steps),
            "--batch-size", str(batch_size), "--mode", mode, "--out", str(out), *(["--vqa", str(vqa)] if vqa else [])]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("report-*.json"):
        old.unlink()
    argv, env = launched(args, processes)
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"data worker failed:\n{done.stderr[-3000:]}")
    return [json.loads(path.read_text()) for path in sorted(out.glob("report-*.json"))]


def build_throughput(workdir: Path, images: int, processes: int) -> dict:
    """``dept-vl features`` over ``images`` generated pictures into a fresh cache, with ``processes`` processes."""
    from PIL import Image

    data = workdir / "build-data"
    if not (data / "data.jsonl").is_file():
        (data / "images").mkdir(parents=True, exist_ok=True)
        with open(data / "data.jsonl", "w") as fh:
            for i in range(images):
                Image.new("RGB", (64, 64), (i % 256, (i // 256) % 256, 128)).save(data / "images" / f"{i}.png")
                fh.write(json.dumps({"image": f"images/{i}.png", "question": "what color?", "answer": "red"}) + "\n")
    cache = workdir / f"build-cache-{processes}"
    if cache.exists():
        shutil.rmtree(cache)
    command = ["-m", "dept_vl.cli", "features", "--data", str(data / "data.jsonl"), "--cache-dir", str(cache),
               "--image-size", "224", "--shard-size", "64"]
    argv, env = launched(command, processes)
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dept-vl features failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    return {"processes": processes, "images": report["images"], "seconds": report["seconds"],
            "images_per_s": report["images"] / report["seconds"]}


def run_data_scale(sizes: list[int], steps: int, workdir: Path, build_images: int = 1024, log=print) -> dict:
    """Every measurement of the module docstring; the JSON-able report."""
    workdir.mkdir(parents=True, exist_ok=True)
    tiny = build_backbone(BenchConfig(backbone="tiny"), workdir / "tiny")
    base = build_backbone(BenchConfig(backbone="t5-base-shape"), workdir / "t5-base-shape")
    report = {"steps": steps, "batch_size": 64, "features": "50 x 768 float16", "runs": []}
    for n in sizes:
        log(f"data scale: a cache of {n} images ...")
        cache = make_cache(workdir / f"cache-{n}", n)
        disk = sum(p.stat().st_size for p in cache.shards()) / 2**30
        (one,) = worker(cache.root, tiny, workdir / f"out-{n}", steps, 64)
        report["runs"].append({**one, "cache_gb": disk})
        log(f"  peak RSS {one['peak_rss_mb']:.0f} MB ({disk:.1f} GB of features)")
    largest = workdir / f"cache-{max(sizes)}"
    log("data scale: two processes under accelerate launch ...")
    pair = worker(largest, tiny, workdir / "out-pair", steps, 64, processes=2)
    single = next(r for r in report["runs"] if r["images"] == max(sizes))
    report["two_processes"] = {"per_process": pair, "combined_pss_mb": sum(r["peak_pss_mb"] for r in pair),
                               "one_process_pss_mb": single["peak_pss_mb"]}
    report["two_processes"]["ratio"] = report["two_processes"]["combined_pss_mb"] / single["peak_pss_mb"]
    # what reading and training add on top of each process's fixed cost (Python, torch, model, accelerate)
    added = sum(r["peak_pss_mb"] - r["start_pss_mb"] for r in pair)
    report["two_processes"].update(combined_added_pss_mb=added,
                                   one_process_added_pss_mb=single["peak_pss_mb"] - single["start_pss_mb"],
                                   start_pss_mb=[r["start_pss_mb"] for r in pair])
    log("data scale: data path against the training step at the t5-base shape ...")
    (report["rates"],) = worker(largest, base, workdir / "out-rates", 20, 64, mode="rates")
    log("data scale: cache build with 1 and 2 processes ...")
    report["build"] = [build_throughput(workdir, build_images, p) for p in (1, 2)]
    small = min(report["runs"], key=lambda r: r["images"])
    report["rss_ratio_largest_vs_smallest"] = single["peak_rss_mb"] / small["peak_rss_mb"]
    return report


def format_data_scale(report: dict) -> str:
    lines = [f"| cache (images) | features on disk | peak RSS, {report['steps']} steps of 64 | vs smallest |",
             "|---:|---:|---:|---:|"]
    small = min(report["runs"], key=lambda r: r["images"])["peak_rss_mb"]
    for run in report["runs"]:
        lines.append(f"| {run['images']:,} | {run['cache_gb']:.1f} GB | {run['peak_rss_mb']:.0f} MB | "
                     f"{run['peak_rss_mb'] / small:.2f}x |")
    pair = report["two_processes"]
    lines += ["", f"two processes (accelerate, gloo): combined peak PSS {pair['combined_pss_mb']:.0f} MB, one process "
              f"{pair['one_process_pss_mb']:.0f} MB: {pair['ratio']:.2f}x; above each process's start "
              f"(imports, model, accelerate) {pair['combined_added_pss_mb']:.0f} MB vs "
              f"{pair['one_process_added_pss_mb']:.0f} MB"]
    rates = report["rates"]
    lines.append(f"data path {rates['data_batches_per_s']:.1f} batches/s, t5-base-shape training step "
                 f"{rates['train_steps_per_s']:.3f} steps/s: {rates['data_over_step']:.0f}x")
    lines.append("cache build: " + ", ".join(f"{b['processes']} process(es) {b['images_per_s']:.1f} img/s"
                                             for b in report["build"]))
    return "\n".join(lines)
