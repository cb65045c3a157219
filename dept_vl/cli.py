"""The ``dept-vl`` command line: thin subcommands that parse, call the library, and print.

Errors a user can cause end in one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from .errors import DeptVLError


def cmd_budget(args) -> None:
    """List the (l, r) pairs whose DePT budget fits m vanilla prompt tokens."""
    from .budget import budget_pairs

    print(f"{'l':>5} {'r':>5} {'params':>10}  (budget m*d = {args.m * args.hidden_size:,})")
    for pair in budget_pairs(args.hidden_size, args.max_length, args.m, step=args.step):
        print(f"{pair.prompt_length:>5} {pair.r:>5} {pair.params:>10,}")


def cmd_demo(args) -> None:
    """Train DePT end to end on easy-vqa offline (real EfficientNet-Lite0, small random T5)."""
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoSettings)})
    result = run_demo(settings, log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(result, indent=2))


def cmd_features(args) -> None:
    """Compute the frozen vision encoder's features for every image of a task's splits, into a cache."""
    from .feature_cache import FeatureCache, default_cache_dir, encoder_signature
    from .tasks import get_task
    from .vision import build_vision_encoder

    task = get_task(args.task)
    splits = args.split or list(task.splits)
    images = {}
    for split in splits:
        data = task.load(split, args.data_dir)
        images.update({i: data.images[i] for ex in data.examples for i in ex.image_ids})
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

    from .demo import DemoSettings

    p = sub.add_parser("demo", help=cmd_demo.__doc__, description=cmd_demo.__doc__)
    for field in dataclasses.fields(DemoSettings):
        p.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                       help=f"(default: {field.default})")
    p.set_defaults(func=cmd_demo)
    return parser


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
    except DeptVLError as err:
        if args.debug:
            raise
        print(f"dept-vl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dept-vl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
