"""The ``dept-vl`` command line: thin subcommands that parse, call the library, and print.

Errors a user can cause end in one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import ChainMap
from pathlib import Path

from . import __version__
from .errors import DeptVLError, TrainingInterrupted


def cmd_budget(args) -> None:
    """List the (l, r) pairs whose DePT budget fits m vanilla prompt tokens."""
    from .budget import budget_pairs

    print(f"{'l':>5} {'r':>5} {'params':>10}  (budget m*d = {args.m * args.hidden_size:,})")
    for pair in budget_pairs(args.hidden_size, args.max_length, args.m, step=args.step):
        print(f"{pair.prompt_length:>5} {pair.r:>5} {pair.params:>10,}")


def _train_overrides(args) -> dict:
    from .train_config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if getattr(args, f.name, None) is not None}


def _model_overrides(args) -> dict:
    """``--method`` and ``--set model.a.b=value`` (value parsed as YAML) as a nested dict."""
    import yaml

    from .errors import ConfigError

    nested: dict = {}
    if args.method:
        nested["method"] = args.method
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("model."):
            raise ConfigError(f"--set takes model.<key>=<value>, got {item!r}")
        *parents, leaf = key.split(".")[1:]
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def cmd_train(args) -> None:
    """Train an adapter (DePT by default) on one task or several; everything goes to --output-dir."""
    from .train import train
    from .train_config import resolve_recipe

    recipe = resolve_recipe(args.config, _train_overrides(args), args.model, _model_overrides(args))
    metrics = train(recipe, resume=args.resume, log=lambda msg: print(msg, file=sys.stderr))
    if metrics is not None:  # the main process (under accelerate launch, the others return None)
        print(json.dumps(metrics, indent=2))


def cmd_eval(args) -> None:
    """Evaluate a checkpoint on a task split: writes predictions (JSONL) and metrics (JSON)."""
    from .evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.task, args.split, args.data_dir, args.output_dir,
                                  args.batch_size, args.num_beams, args.limit, not args.no_cache, args.cache_dir,
                                  log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(metrics, indent=2))


def cmd_predict(args) -> None:
    """Answer a question about an image (NLVR2: two images), caption an image, or predict a JSONL batch."""
    from .predict import run_predict

    run_predict(args.inputs, args.checkpoint, args.task, args.input, args.num_beams, args.backbone)


def cmd_features(args) -> None:
    """Compute the frozen vision encoder's features for every image of a task's splits, into a cache."""
    from .feature_cache import FeatureCache, default_cache_dir, encoder_signature
    from .tasks import get_task
    from .vision import build_vision_encoder

    task = get_task(args.task)
    splits = args.split or list(task.splits)
    views = []
    for split in splits:
        data = task.load(split, args.data_dir)
        data.check_images()
        views.append(data.images_for())
    images = ChainMap(*views)
    encoder = build_vision_encoder(args.encoder, image_size=args.image_size, pool_tokens=args.pool_tokens)
    encoder = encoder.to(args.device)
    signature = encoder_signature(args.encoder, encoder)
    cache = FeatureCache(args.cache_dir or default_cache_dir(task.name, signature), signature,
                         fmt=args.format, dtype=args.dtype)
    print(f"{len(images)} images in {', '.join(splits)}; {len(images) - len(cache.missing(list(images)))} "
          f"already cached in {cache.root}", file=sys.stderr)
    new = cache.build(images, encoder, batch_size=args.batch_size, shard_size=args.shard_size)
    print(json.dumps({"cache_dir": str(cache.root), "images": len(images), "computed": new,
                      "shards": len(cache.shards()), **cache.config["signature"]}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dept-vl", description="Decomposed Prompt Tuning (DePT) for frozen "
                                     "vision-language models.")
    parser.add_argument("--version", action="version", version=f"dept-vl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("budget", help=cmd_budget.__doc__, description=cmd_budget.__doc__)
    p.add_argument("--hidden-size", type=int, default=768, help="d (t5-base: 768)")
    p.add_argument("--max-length", type=int, default=256, help="s: maximum input length")
    p.add_argument("--m", type=int, default=100, help="vanilla prompt length to match")
    p.add_argument("--step", type=int, default=10, help="show every step-th prompt length")
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("features", help=cmd_features.__doc__, description=cmd_features.__doc__)
    p.add_argument("--task", required=True, help="vqa | gqa | nlvr2 | caption | easyvqa")
    p.add_argument("--encoder", default="efficientnet-lite0", help="registered name, timm:<name>, HF name or path")
    p.add_argument("--split", action="append", help="split to cache (repeatable; default: every split)")
    p.add_argument("--data-dir", help="the task's data directory (not needed for easyvqa)")
    p.add_argument("--image-size", type=int, help="encoder input size in pixels (default: the encoder's)")
    p.add_argument("--pool-tokens", type=int, help="average-pool each image to this many tokens (a square)")
    p.add_argument("--cache-dir", help="default: $DEPT_VL_CACHE/features/<task>/<encoder>-<size>px-<tokens>tok")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "numpy"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard (the unit of resume)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_features)

    _add_train_parser(sub)
    _add_bench_parser(sub)

    p = sub.add_parser("eval", help=cmd_eval.__doc__, description=cmd_eval.__doc__)
    p.add_argument("--checkpoint", required=True, help="a run's output dir, its model/ dir, or a step checkpoint")
    p.add_argument("--task", help="default: the task the checkpoint was trained on")
    p.add_argument("--split", help="default: the task's test split")
    p.add_argument("--data-dir", help="default: the one the checkpoint was trained with")
    p.add_argument("--output-dir", help="where predictions and metrics go (default: the checkpoint dir)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy; >1 = beam search")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N examples only")
    p.add_argument("--no-cache", action="store_true", help="run the vision encoder instead of the feature cache")
    p.add_argument("--cache-dir", help="feature cache root (default: $DEPT_VL_CACHE)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help=cmd_predict.__doc__, description=cmd_predict.__doc__)
    p.add_argument("inputs", nargs="*", metavar="IMAGE [IMAGE2] [QUESTION]",
                   help="image path(s), then the question (none for a caption checkpoint)")
    p.add_argument("--checkpoint", required=True, help="a run's output dir or its model/ dir")
    p.add_argument("--task", help="default: the task the checkpoint was trained on")
    p.add_argument("--input", help="JSONL file: {\"image\" or \"images\", \"question\"} per line")
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy; >1 = beam search")
    p.add_argument("--backbone", help="load the text backbone from here instead of the saved name")
    p.set_defaults(func=cmd_predict)
    return parser


def cmd_bench(args) -> None:
    """Speed and memory of pt / dept / lora / full / the bare backbone side by side (--quality: accuracy)."""
    if args.quality:
        from .bench_quality import format_quality, run_quality

        report = run_quality(args.output_dir, args.quality_steps, args.quality_methods,
                             log=lambda msg: print(msg, file=sys.stderr))
        print(format_quality(report))
    else:
        from .bench import BenchConfig, format_table, run_bench

        cfg = BenchConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig)
                             if getattr(args, f.name) is not None})
        report = run_bench(cfg, Path(args.output_dir) / "backbones", log=lambda msg: print(msg, file=sys.stderr))
        print(format_table(report))
    from .bench import write_report

    write_report(report, args.json or Path(args.output_dir) / "bench.json",
                 None if args.quality else (args.png or Path(args.output_dir) / "bench.png"))


def _add_bench_parser(sub) -> None:
    import typing

    from .bench import BenchConfig

    p = sub.add_parser("bench", help=cmd_bench.__doc__, description=cmd_bench.__doc__)
    hints = typing.get_type_hints(BenchConfig)
    for field in dataclasses.fields(BenchConfig):
        flag = f"--{field.name.replace('_', '-')}"
        if hints[field.name] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"(default: {field.default})")
        else:
            kind = int if hints[field.name] is int else str
            p.add_argument(flag, type=kind, default=None, help=f"(default: {field.default})")
    p.add_argument("--output-dir", default="runs/bench", help="bench.json, bench.png and the built backbones")
    p.add_argument("--json", help="write the report here (default: OUTPUT/bench.json)")
    p.add_argument("--png", help="write the bar chart here (default: OUTPUT/bench.png)")
    p.add_argument("--quality", action="store_true", help="train every method on easy-vqa and compare accuracy")
    p.add_argument("--quality-steps", type=int, default=3000)
    p.add_argument("--quality-methods", default="pt,dept,lora,full")
    p.set_defaults(func=cmd_bench)


def _add_train_parser(sub) -> None:
    """``dept-vl train``: one option per TrainConfig field (litgpt style), plus recipe / model / method."""
    import typing

    from .train_config import TrainConfig

    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    p.add_argument("--config", help="recipe YAML (model: + train:), e.g. configs/vqa_t5-base_clip.yaml")
    p.add_argument("--model", help="named model config (dept_vl/model_configs) or a JSON/YAML file")
    p.add_argument("--method", choices=["dept", "pt", "lora", "full"], help="what to train (default: dept)")
    p.add_argument("--set", action="append", metavar="model.KEY=VALUE", help="override a model setting")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = f"--{field.name.replace('_', '-')}"
        kind = next((t for t in (bool, int, float) if t is hints[field.name] or t in typing.get_args(hints[field.name])), str)
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"(default: {field.default})")
        else:
            p.add_argument(flag, type=kind, default=None, help=f"(default: {field.default})")
    p.set_defaults(func=cmd_train)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-model "Loading weights" bars; our own tqdm bars stay
    try:
        args.func(args)
    except TrainingInterrupted as err:  # a checkpoint was saved: say how to resume
        print(f"dept-vl: {err}", file=sys.stderr)
        return 130
    except DeptVLError as err:
        if args.debug:
            raise
        print(f"dept-vl: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("dept-vl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
