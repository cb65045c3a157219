"""One process of ``dept-vl bench --data-scale``: DePT trained on a feature cache through the data path that
``dept-vl train`` uses (BatchOrder -> make_batch -> FeatureCache -> Prefetcher), reporting its peak memory.

Run by the bench as ``python -m dept_vl.bench.data_worker`` in a fresh process, or under ``accelerate launch``
(every process reports; their proportional set sizes add up to what the machine holds). ``--mode rates``
measures instead how many batches per second the data path delivers and how many training steps per second the
model takes, each alone; ``--mode load`` the seconds and memory of opening the cache's index and of loading the
VQAv2 files under ``--vqa`` (``dept-vl bench --index-scale``).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch

from ..data.batches import BatchOrder, ImageInputs, Prefetcher, TaskSplit, make_batch
from ..data.feature_cache import FeatureCache
from ..data.tasks import Example, Task, TaskData, get_task
from ..methods import param_groups
from ..models import TextBackbone
from .speed import BenchConfig, make_model
from .timing import PeakSampler, steady_rss


class SyntheticTask(Task):
    """One question per cached image; the target is the image's own answer word."""

    name = "synthetic"


def memory_kb() -> dict[str, int]:
    """This process's resident and proportional set sizes (kB), from /proc/self/smaps_rollup."""
    values = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key.lower()] = int(rest.split()[0])
    return values


def data_path(cache: FeatureCache, model, batch_size: int, rank: int, world: int):
    """``build(step)`` -> the step's model inputs, read from ``cache`` as training reads them."""
    ids = cache.ids()
    examples = [Example(f"q{i}", (image_id,), "what is in the picture?", [f"w{3 + i % 50}"])
                for i, image_id in enumerate(ids)]
    splits = [TaskSplit(SyntheticTask(), TaskData("synthetic", "train", examples, {}))]
    images, order = ImageInputs([cache]), BatchOrder([len(examples)], batch_size, seed=0, rank=rank, world=world)
    return lambda step: make_batch(model, splits, images, order.batch(step), 0, step, device="cpu")


def load_at_scale(args) -> dict:
    """Seconds, peak and held RSS of opening the cache's index, then of loading both VQAv2 splits under ``args.vqa``
    (each above the process's memory just before it)."""
    steady_rss()
    report, held = {"rank": 0}, []
    splits = ("train2014", "val2014")
    for name, load, count in (("index", lambda: FeatureCache(args.cache, None), len),
                              ("task", lambda: [get_task("vqa").load(s, args.vqa) for s in splits],
                               lambda data: sum(map(len, data)))):
        gc.collect()
        before = memory_kb()["rss"]
        with PeakSampler(memory_kb, 0.02) as peak:
            start = time.perf_counter()
            held.append(load())
            seconds = time.perf_counter() - start
        gc.collect()
        report[name] = {"items": count(held[-1]), "seconds": seconds, "peak_mb": (peak.peak["rss"] - before) / 1024,
                        "held_mb": (memory_kb()["rss"] - before) / 1024}
    return report


def run(args) -> dict:
    from accelerate import Accelerator

    if args.mode == "load":
        return load_at_scale(args)
    if args.mode == "train":
        steady_rss()  # freed batches go back to the system: the peak follows live memory (rates: default malloc)
    accelerator = Accelerator(cpu=True)
    cache = FeatureCache(args.cache, None)
    cfg = BenchConfig(batch_size=args.batch_size, visual_tokens=cache.num_tokens, feature_dim=cache.feature_dim,
                      max_length=cache.num_tokens + 32, text_length=16, answer_length=4)
    torch.manual_seed(0)
    model = make_model(cfg, "dept", args.backbone, TextBackbone.from_pretrained(args.backbone))
    build = data_path(cache, model, args.batch_size // accelerator.num_processes, accelerator.process_index,
                      accelerator.num_processes)
    optimizer = torch.optim.AdamW(param_groups(model, 0.3, 1e-4))
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if args.mode == "rates":
        return {"rank": accelerator.process_index, **rates(build, wrapped, optimizer, accelerator, args.steps)}
    report = {"rank": accelerator.process_index, "processes": accelerator.num_processes, "images": len(cache)}
    before = memory_kb()  # the process's fixed cost: Python, torch, the model, accelerate; no batch read yet
    report.update(start_rss_mb=before["rss"] / 1024, start_pss_mb=before["pss"] / 1024)
    with PeakSampler(memory_kb, 0.02) as peak, Prefetcher(build, accelerator.device) as prefetch:
        start = time.perf_counter()
        for step in range(args.steps):
            train_step(wrapped, optimizer, accelerator, prefetch.get(step))
        report["train_s"] = time.perf_counter() - start
    report.update(peak_rss_mb=peak.peak["rss"] / 1024, peak_pss_mb=peak.peak["pss"] / 1024,
                  open_shard_files=cache.open_files, shards=len(cache.shards()), steps=args.steps)
    return report


def train_step(model, optimizer, accelerator, batch: dict) -> float:
    loss = model(**batch).loss
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def rates(build, model, optimizer, accelerator, steps: int) -> dict:
    """Batches per second of the data path alone (one thread, as the prefetcher runs it), and training steps per
    second on one fixed batch (the data path out of it)."""
    build(0)  # warm-up: tokenizer, first shard files
    start = time.perf_counter()
    count = max(20, steps)
    for step in range(1, count + 1):
        build(step)
    data_rate = count / (time.perf_counter() - start)
    batch = build(0)
    train_step(model, optimizer, accelerator, batch)  # warm-up
    timed = max(2, steps // 10)
    start = time.perf_counter()
    for _ in range(timed):
        train_step(model, optimizer, accelerator, batch)
    step_rate = timed / (time.perf_counter() - start)
    return {"data_batches_per_s": data_rate, "train_steps_per_s": step_rate, "data_over_step": data_rate / step_rate}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mode", choices=("train", "rates", "load"), default="train")
    parser.add_argument("--vqa", help="--mode load: a directory of VQAv2 train2014 / val2014 files")
    parser.add_argument("--out", required=True, help="a directory: each process writes report-<rank>.json")
    args = parser.parse_args(argv)
    report = run(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"report-{report['rank']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
