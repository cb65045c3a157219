"""``dept-vl features``: the frozen vision encoder's features for every image of a recipe's task splits, computed
once into the cache that ``dept-vl train`` (and ``eval``) with the same recipe read.

Under ``accelerate launch`` every process encodes its share of the images on its own device (``--device cuda``
means ``cuda:LOCAL_RANK``) and writes its own shards; the cache's claims split the work (``cache_claims``)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import ChainMap
from dataclasses import dataclass

from .._dataclass import check_choice, check_int, setting
from ..data.data_dirs import DataDirs
from ..data.feature_cache import DTYPES, FORMATS, open_feature_cache
from ..data.tasks import get_task
from ..models import create_vision_encoder
from ..runs.recipe import resolve_recipe


@dataclass
class FeaturesConfig:
    """``dept-vl features``: compute the frozen vision encoder's features for every image of a task's splits, into
    the cache that `dept-vl train` with the same recipe reads."""

    task: str | None = setting(None, "the task whose images to encode (default: the recipe's tasks)")
    data: dict | None = setting(None, "your own data instead of a task, as for train --data",
                                flag={"action": "append", "metavar": "[NAME=]SOURCE"})
    config: str | None = setting(None, "the recipe whose encoder, data and cache to use (default: the task's, as for "
                                 "`dept-vl train --task TASK`)")
    model: str | None = setting(None, "a named model config or a JSON/YAML file (as for train)")
    encoder: str | None = setting(None, "registered name, timm:<name>, HF name or path (default: the recipe's)")
    split: list[str] | None = setting(None, "a split to cache (repeatable; default: every split)",
                                      flag={"action": "append"})
    data_dir: DataDirs = setting(None, "the task's data directory (default: the recipe's; none for easyvqa)",
                                 flag={"action": "append", "metavar": "[TASK=]DIR"})
    image_size: int | None = setting(None, "encoder input size in pixels (default: the recipe's)")
    pool_tokens: int | None = setting(None, "average-pool each image to this many tokens, a square (default: the "
                                      "recipe's)")
    cache_dir: str | None = setting(None, "the cache directory (train / eval --cache-dir read it); default: "
                                    "$DEPT_VL_CACHE/features/<task>/<encoder>-<weights>-<size>px-<tokens>tok")
    format: str = setting("safetensors", "shard file format: safetensors | numpy")
    dtype: str = setting("float32", "stored precision: float32 | float16 | bfloat16 (float16 halves the disk and "
                         "memory; the model reads float32)")
    batch_size: int = setting(64, "images per encoder batch")
    shard_size: int = setting(1024, "images per shard (the unit of resume)")
    device: str = setting("cpu", "where the encoder runs: cpu | cuda | cuda:N")

    def __post_init__(self) -> None:
        check_choice("format", self.format, FORMATS)
        check_choice("dtype", self.dtype, DTYPES)
        check_int("batch_size", self.batch_size, 1)
        check_int("shard_size", self.shard_size, 1)
        self.data_dir = DataDirs.parse(self.data_dir)


def build_features(cfg: FeaturesConfig, log=print) -> list[dict]:
    """Fill the cache of every task of the recipe; one report per task (images, computed, shards, signature)."""
    overrides = {"task": cfg.task} if cfg.task else {}
    recipe = resolve_recipe(cfg.config, overrides, cfg.model, data_overrides={"train": cfg.data} if cfg.data else None)
    jobs = []  # the data is read and checked first: its errors come before the encoder's download or build
    for name in recipe.tasks:
        task = get_task(name, own=recipe.own_data(), log=log)
        task.skip_bad_lines = recipe.train.skip_bad_lines
        splits = cfg.split or list(task.splits)
        where = cfg.data_dir.for_task(name) or recipe.data_dir_for(name)
        jobs.append((task, splits, ChainMap(*(_split_images(task, split, where) for split in splits))))
    vision = recipe.model.vision
    if cfg.encoder:  # another encoder than the recipe's: its own defaults, unless given
        vision = dataclasses.replace(vision, encoder=cfg.encoder, image_size=None, pool_tokens=None)
    vision = dataclasses.replace(vision, image_size=cfg.image_size or vision.image_size,
                                 pool_tokens=cfg.pool_tokens or vision.pool_tokens)
    rank, world = launched_rank()
    encoder = create_vision_encoder(vision).to(process_device(cfg.device))
    if world > 1:  # start together, so that the work is shared from the first chunk
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    reports = []
    for task, splits, images in jobs:
        cache = open_feature_cache(task.name, encoder, cfg.cache_dir or recipe.train.cache_dir, fmt=cfg.format,
                                   dtype=cfg.dtype)
        if rank == 0:
            log(f"{task.name}: {len(images)} images in {', '.join(splits)}; "
                f"{len(images) - len(cache.missing(list(images)))} already cached in {cache.root}"
                + (f"; {world} processes share the rest" if world > 1 else ""))
        start = time.perf_counter()
        new = cache.build(images, encoder, batch_size=cfg.batch_size, shard_size=cfg.shard_size, progress=rank == 0)
        reports.append({"task": task.name, "cache_dir": str(cache.root), "images": len(images), "computed": new,
                        "seconds": round(time.perf_counter() - start, 3),
                        "shards": len(cache.shards()), "process": rank, "processes": world,
                        **cache.config["signature"]})
    return reports


def launched_rank() -> tuple[int, int]:
    """(rank, world size) of this process under ``accelerate launch`` / torchrun; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def process_device(device: str) -> str:
    """``cuda`` under a launcher means this process's own GPU, ``cuda:LOCAL_RANK``."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def _split_images(task, split: str, data_dir):
    data = task.load(split, data_dir)
    data.check_images()
    return data.images_for()
