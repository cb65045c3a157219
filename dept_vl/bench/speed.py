"""``dept-vl bench``: speed and memory of pt / dept / lora / full / the bare frozen backbone, side by side.

Every method runs in one process on the same frozen backbone, with the same synthetic batch shapes (visual
tokens from precomputed features + text tokens): median training-step time (forward + backward + AdamW) after
warm-up, generation time of a short answer with the KV cache, peak memory, samples/s and trainable parameters,
each also as a ratio to ``pt``. ``bare`` is the frozen backbone fed the same sequence length as DePT (a frozen
prefix of l tokens, no A·B), so dept / bare is the cost of DePT itself. Each row also holds the training FLOPs
counted by torch's FlopCounterMode and the rate they are done at.
Ratios that a target hangs on (dept / pt, dept / bare, padded / dynamic) are also measured *paired*: the two
models take turns step by step in one process (ABBA order), and the median of the per-pair ratios is reported
with its quartiles, which cancels the drift of a shared machine that separate runs suffer.
Memory (the first warm-up + 1 training steps): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak
resident set size above the level before the training steps (weights paged in), sampled every millisecond from
/proc, each method in a fresh process whose malloc returns freed tensors to the system (``steady_rss``), so that
the reading follows live memory and repeats to 0.1 MB (reported as ``peak_mem_mb``, with ``mem_kind``). On CPU
the timings come from another fresh process with the default malloc: ``steady_rss`` makes every large tensor a
new mapping, and its page faults would slow each step by some 15 %, more for the methods with more activations.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .._dataclass import check_choice, check_int, setting
from ..errors import ConfigError
from ..fast import BACKENDS, MODES, FastPath
from ..methods import Budget, DePT, DePTConfig, get_method, list_methods, register_method, settings_at_budget
from ..models import ModelConfig, RandomTextConfig, TextBackbone, TextConfig, VisionConfig, VisionLanguageModel, \
    create_vision_encoder
from ..models.buckets import bucket_labels, bucket_text
from ..models.names import FEATURES
from ..models.random_t5 import build_word_tokenizer, save_random_t5
from .timing import PeakMemory, TrainStep, bf16_autocast, median_time, paired_ratio, steady_rss, sync


def frozen_prefix(ctx) -> DePT:
    """A DePT without A, B whose prompt (zeros) does not train: the frozen backbone at DePT's sequence length."""
    prefix = DePT(dataclasses.replace(ctx.dept, r=0, prompt_init="random"), ctx.hidden_size)
    torch.nn.init.zeros_(prefix.prompt_embeddings)
    prefix.prompt_embeddings.requires_grad_(False)
    return prefix


register_method("bare", reference=True, adapter=frozen_prefix, help="the frozen backbone fed DePT's sequence "
                "length: a frozen prefix of l tokens and no A @ B, so dept / bare is the cost of DePT itself")
METHODS = tuple(list_methods(reference=True))  # every registered method (pt, dept, adept, lora, full) and bare
SHAPES = {  # built offline from the configs' values; weights random (speed does not depend on them)
    "tiny": (RandomTextConfig(d_model=64, d_ff=128, num_layers=2, num_heads=4), 1000),
    "t5-base-shape": (RandomTextConfig(d_model=768, d_ff=3072, num_layers=12, num_heads=12), 32128),
}
VISION_SHAPES = {  # vision towers built offline from their configs' values, random weights
    "clip-vit-b32-shape": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                               patch_size=32, image_size=224, projection_dim=512),
}
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}  # dense, SXM where it applies


@dataclass
class BenchConfig:
    backbone: str = setting("tiny", "tiny | t5-base-shape (random weights, built offline) | a Hugging Face name or path")
    vlm: str | None = setting(None, "bench a native VLM instead: smolvlm-shape | tiny-vlm (random weights, built "
                              "offline) | a hub name or directory; methods pt, dept, adept, lora, bare")
    batch_size: int = setting(8, "examples per step")
    text_length: int = setting(20, "text tokens per example")
    visual_tokens: int = setting(49, "visual tokens per example (precomputed features)")
    feature_dim: int = setting(768, "width of the precomputed visual features")
    answer_length: int = setting(4, "tokens of the target and of the generated answer")
    m: int = setting(100, "vanilla prompt length; DePT gets the same budget")
    prompt_length: int = setting(60, "DePT's l")
    r: int = setting(30, "DePT's rank")
    max_length: int = setting(256, "DePT's s")
    steps: int = setting(10, "timed steps per method (the median is reported)")
    warmup: int = setting(3, "untimed steps first")
    device: str = setting("cpu", "cpu | cuda | cuda:N")
    dtype: str = setting("float32", "float32 | bfloat16 (frozen weights and autocast on CUDA)")
    pad_to_max_length: bool = setting(False, "also time DePT with every input padded to max_length (the official "
                                      "code)")
    encoder: str | None = setting(None, "also time DePT running this vision encoder (or clip-vit-b32-shape) every "
                                  "step, against cached features")
    image_size: int = setting(224, "image size for --encoder")
    methods: str = setting(",".join(METHODS), "comma-separated methods to measure")
    isolate: bool = setting(True, "on CPU, time and measure each method in fresh processes (clean peak memory)")
    paired: int = setting(10, "step pairs per paired ratio (dept/pt, dept/bare, padded/dynamic); 0: none")
    cache_features: bool = setting(False, "with --vlm: also time DePT with the image features read from a warm "
                                   "feature cache, paired against computing them every step")
    train_projector: bool = setting(False, "with --vlm: train the VLM's own projector too (every method but lora; "
                                    "with --cache-features the tower's output before it is cached)")
    gradient_checkpointing: bool = setting(False, "with --vlm: also time DePT with the language model's activations "
                                           "recomputed in the backward pass (peak memory beside), paired")
    compile: bool = setting(False, "time the fast path: each model's step and generation compiled over bucketed "
                            "lengths (compile seconds, graphs and graph breaks reported apart from the step times)")
    compile_backend: str = setting("inductor", "with --compile: inductor | aot_eager | eager")
    compile_mode: str = setting("default", "with --compile: default | reduce-overhead | max-autotune | "
                                "max-autotune-no-cudagraphs")
    bucket_multiple: int = setting(8, "with --compile: lengths rounded up to powers of two up to this, then to "
                                   "multiples of it")

    def __post_init__(self) -> None:
        for name in ("batch_size", "text_length", "visual_tokens", "feature_dim", "answer_length", "m",
                     "prompt_length", "max_length", "steps", "image_size", "bucket_multiple"):
            check_int(f"bench.{name}", getattr(self, name), 1)
        for name in ("r", "warmup", "paired"):
            check_int(f"bench.{name}", getattr(self, name), 0)
        check_choice("bench.dtype", self.dtype, ("float32", "bfloat16"))
        check_choice("bench.compile_backend", self.compile_backend, BACKENDS)
        check_choice("bench.compile_mode", self.compile_mode, MODES)


def build_backbone(cfg: BenchConfig, directory: Path) -> str:
    """A named shape is saved (random weights, a vocabulary of ``w<i>`` words) to ``directory``; anything else is
    returned as given."""
    if cfg.backbone not in SHAPES:
        return cfg.backbone
    shape, vocab_size = SHAPES[cfg.backbone]
    if not (directory / "config.json").is_file():
        save_random_t5(directory, shape, build_word_tokenizer(f"w{i}" for i in range(3, vocab_size)))
    return str(directory)


def build_vision(cfg: BenchConfig, directory: Path) -> str:
    """A VISION_SHAPES name is saved (random CLIP weights) to ``directory``; anything else is returned as given."""
    if cfg.encoder not in VISION_SHAPES:
        return cfg.encoder
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        CLIPVisionModel(CLIPVisionConfig(**VISION_SHAPES[cfg.encoder])).save_pretrained(directory)
    return str(directory)


def budget_settings(cfg: BenchConfig, method: str, text: TextBackbone):
    """The settings of ``method`` that spend DePT's budget on ``text`` (None where they are DePT's own)."""
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    return settings_at_budget(method, Budget.of(dept, text.hidden_size, text.model))


def make_model(cfg: BenchConfig, method: str, backbone: str, text: TextBackbone, vision=None):
    """``method`` on the shared frozen ``text`` at DePT's budget (the registry's budget rule sets its settings)."""
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    settings = budget_settings(cfg, method, text)
    config = ModelConfig(
        vision=VisionConfig(encoder=FEATURES, feature_dim=cfg.feature_dim, num_tokens=cfg.visual_tokens) if vision
        is None else VisionConfig(encoder=cfg.encoder, image_size=cfg.image_size),
        text=TextConfig(backbone=backbone, max_length=cfg.max_length - cfg.visual_tokens, max_target_length=cfg.answer_length),
        dept=dept, method=method, sections={} if settings is None else {get_method(method).section: settings})
    if get_method(method).modifies_backbone:  # give it a copy, keep the shared backbone untouched
        text = TextBackbone(copy.deepcopy(text.model), text.tokenizer, text.name_or_path)
    return VisionLanguageModel(config, vision=vision, text=text).to(cfg.device)


def synthetic_batch(cfg: BenchConfig, vocab: int, device, pad: bool, pixels: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    n = cfg.max_length - cfg.visual_tokens if pad else cfg.text_length
    ids = torch.randint(3, vocab, (cfg.batch_size, n), generator=g)
    mask = torch.zeros_like(ids)
    mask[:, : cfg.text_length] = 1  # padded to max_length: the same real tokens, then pads
    ids = ids.masked_fill(mask == 0, 0)
    batch = {"input_ids": ids, "attention_mask": mask,
             "labels": torch.randint(3, vocab, (cfg.batch_size, cfg.answer_length), generator=g)}
    if pixels:
        batch["pixel_values"] = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g)
    else:
        batch["image_features"] = torch.randn(cfg.batch_size, cfg.visual_tokens, cfg.feature_dim, generator=g)
    if cfg.compile:  # the lengths a compiled run would see
        batch = bucket_text(batch, cfg.bucket_multiple, cfg.max_length - cfg.visual_tokens, 0)
        batch["labels"] = bucket_labels(batch["labels"], cfg.bucket_multiple, cfg.answer_length)
    return {k: v.to(device) for k, v in batch.items()}


def train_step(cfg: BenchConfig, model, batch: dict) -> TrainStep:
    """The timed training step of ``model``. Under ``cfg.compile`` the model first gets the fast path, and its step
    and generation are compiled here: ``model.fast_path.compile_s`` holds the seconds the first calls took beyond a
    steady call, so that no compiling falls inside a timed or memory-measured step."""
    step = TrainStep(model, batch, cfg.device, bf16=cfg.dtype == "bfloat16")
    if cfg.compile and model.fast_path is None:
        fast = FastPath(cfg.compile_backend, cfg.compile_mode, cfg.bucket_multiple)
        fast.apply(model)
        generate = GenerateStep(cfg, model, batch)
        fast.compile_s = max(0.0, step() - step()) + max(0.0, generate() - generate())
    return step


class GenerateStep:
    """Generation (and decoding) of a ``cfg.answer_length``-token answer for ``batch`` (KV cache), through the model's
    own ``generate``; calling it returns its seconds."""

    def __init__(self, cfg: BenchConfig, model, batch: dict):
        self.cfg, self.model, self.device = cfg, model, torch.device(cfg.device)
        self.inputs = {k: v for k, v in batch.items() if k != "labels"}

    def __call__(self) -> float:
        self.model.eval()
        sync(self.device)
        start = time.perf_counter()
        with torch.no_grad(), bf16_autocast(self.device, self.cfg.dtype == "bfloat16"):
            self.model.generate(**self.inputs, max_new_tokens=self.cfg.answer_length,
                                min_new_tokens=self.cfg.answer_length)
        sync(self.device)
        return time.perf_counter() - start


def page_in(model) -> None:
    """Read every weight once: weights loaded lazily (memory-mapped files) are paged in now, not during the steps."""
    with torch.no_grad():
        sum(float(p.sum()) for p in model.parameters())


def measure_memory(cfg: BenchConfig, model, batch: dict) -> dict:
    """Peak memory of the first ``cfg.warmup + 1`` training steps (gradients and optimizer state included)."""
    step = train_step(cfg, model, batch)
    page_in(model)
    with PeakMemory(torch.device(cfg.device)) as memory:
        for _ in range(cfg.warmup + 1):
            step()
    return {"peak_mem_mb": memory.mb, "mem_kind": memory.kind}


def time_method(cfg: BenchConfig, model, batch: dict) -> dict:
    """Median train-step and generation seconds (after warm-up), trainable parameters, counted training FLOPs and
    the rate they are done at."""
    device = torch.device(cfg.device)
    step, generate = train_step(cfg, model, batch), GenerateStep(cfg, model, batch)
    page_in(model)
    seconds = median_time(step, cfg.steps, cfg.warmup)
    infer, flops = median_time(generate, cfg.steps, cfg.warmup), step.flops()
    row = {"train_step_s": seconds, "infer_s": infer, "samples_per_s": cfg.batch_size / seconds,
           "trainable_params": sum(p.numel() for p in model.trainable_parameters().values()),
           "train_gflops": flops / 1e9, "train_tflops_per_s": flops / seconds / 1e12}
    if model.fast_path is not None:
        row.update(compile_s=model.fast_path.compile_s, compiled_graphs=model.fast_path.graphs,
                   graph_breaks=model.fast_path.graph_breaks)
    if device.type == "cuda":
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in torch.cuda.get_device_name(device)), None)
        row["fraction_of_bf16_peak"] = row["train_tflops_per_s"] / peak if peak else None
    return row


def _measure(cfg: BenchConfig, method: str, pad: bool, backbone: str, memory: bool, queue) -> None:
    """Child-process body of an isolated measurement: memory (with ``steady_rss``), or timings (with the default
    malloc: ``steady_rss``'s page faults would slow every step)."""
    if memory:
        steady_rss()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    text = TextBackbone.from_pretrained(backbone)
    model = make_model(cfg, method, backbone, text)
    batch = synthetic_batch(cfg, text.model.config.vocab_size, cfg.device, pad)
    queue.put((measure_memory if memory else time_method)(cfg, model, batch))


def _in_fresh_process(cfg: BenchConfig, method: str, pad: bool, backbone: str, memory: bool) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(cfg, method, pad, backbone, memory, queue))
    process.start()
    try:
        return queue.get(timeout=3600)
    finally:
        process.join()


def run_name(method: str, pad: bool) -> str:
    """A run's name in the report: ``dept``, or ``dept@max_length`` when every input is padded."""
    return f"{method}@max_length" if pad else method


def run_bench(cfg: BenchConfig, workdir: str | Path = ".bench", log=print) -> dict:
    """Measure every method of ``cfg.methods``; return the JSON-able report."""
    methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown bench method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if cfg.visual_tokens + cfg.text_length > cfg.max_length:
        raise ConfigError("visual_tokens + text_length exceeds max_length")
    torch.manual_seed(0)
    backbone = build_backbone(cfg, Path(workdir) / cfg.backbone)
    dtype = {"float32": None, "bfloat16": torch.bfloat16}[cfg.dtype]
    text = TextBackbone.from_pretrained(backbone, dtype=dtype if cfg.device != "cpu" else None).to(cfg.device)
    d = text.hidden_size
    budget = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length).num_parameters(d)
    if "pt" in methods and budget != cfg.m * d:
        log(f"note: DePT (l={cfg.prompt_length}, r={cfg.r}) has {budget} parameters, m={cfg.m} tokens "
            f"{cfg.m * d}; pt uses DePT's budget ({round(budget / d)} tokens)")
    vocab = text.model.config.vocab_size
    results = []
    runs = [(m, False) for m in methods] + ([("dept", True)] if cfg.pad_to_max_length else [])
    for method, pad in runs:
        name = run_name(method, pad)
        log(f"bench {name} ...")
        if cfg.isolate and not cfg.device.startswith("cuda"):  # a fresh process for each: timings, then memory
            results.append({"method": name, **_in_fresh_process(cfg, method, pad, backbone, False),
                            **_in_fresh_process(cfg, method, pad, backbone, True)})
            continue
        model = make_model(cfg, method, backbone, text)
        batch = synthetic_batch(cfg, vocab, cfg.device, pad)
        results.append({"method": name, **measure_memory(cfg, model, batch), **time_method(cfg, model, batch)})
        del model
    base = next((r for r in results if r["method"] == "pt"), None)
    for row in results:
        for key in ("train_step_s", "infer_s", "peak_mem_mb", "samples_per_s", "trainable_params"):
            row[f"{key}_vs_pt"] = row[key] / base[key] if base and base[key] else None
    report = {"machine": machine(cfg.device), "config": dataclasses.asdict(cfg), "dept_budget": budget,
              "settings_at_budget": {m: dataclasses.asdict(s) for m in methods
                                     if (s := budget_settings(cfg, m, text)) is not None},
              "results": results, "paired": paired_ratios(cfg, runs, backbone, text, vocab, log)}
    if "lora" in report["settings_at_budget"]:
        report["lora_r"] = report["settings_at_budget"]["lora"]["r"]  # the key of reports of dept-vl 0.1
    if cfg.encoder:
        report["feature_cache"] = encoder_speedup(cfg, backbone, text, vocab, Path(workdir), log)
    return report


def paired_ratios(cfg: BenchConfig, runs: list, backbone: str, text, vocab: int, log) -> list[dict]:
    """dept / pt, dept / bare and dept@max_length / dept: training-step and generation time, each measured
    paired (``paired_ratio``)."""
    if not cfg.paired:
        return []
    wanted = [("dept", False, "pt", False), ("dept", False, "bare", False), ("dept", True, "dept", False)]
    timers, out = {}, []
    for a, pad_a, b, pad_b in wanted:
        if (a, pad_a) not in runs or (b, pad_b) not in runs:
            continue
        for method, pad in ((a, pad_a), (b, pad_b)):
            if (method, pad) not in timers:
                model = make_model(cfg, method, backbone, text)
                batch = synthetic_batch(cfg, vocab, cfg.device, pad)
                timers[method, pad] = train_step(cfg, model, batch), GenerateStep(cfg, model, batch)
        names = [run_name(a, pad_a), run_name(b, pad_b)]
        log(f"bench {names[0]} / {names[1]}, paired ...")
        row = {"a": names[0], "b": names[1], "pairs": cfg.paired}
        for i, kind in enumerate(("step", "infer")):
            ratio = paired_ratio(timers[a, pad_a][i], timers[b, pad_b][i], cfg.paired, cfg.warmup)
            row.update({f"{kind}_ratio_{k}": v for k, v in ratio.items() if k != "pairs"})
        out.append(row)
    return out


def encoder_speedup(cfg: BenchConfig, backbone: str, text, vocab: int, workdir: Path, log) -> dict:
    """DePT step time running the frozen vision encoder every step against reading cached features (both timed
    separately, and paired)."""
    log(f"bench dept with {cfg.encoder} every step ...")
    vision = create_vision_encoder(VisionConfig(encoder=build_vision(cfg, workdir / str(cfg.encoder)),
                                                image_size=cfg.image_size))
    vision = vision.to(cfg.device)
    shaped = dataclasses.replace(cfg, visual_tokens=vision.num_tokens(), feature_dim=vision.out_dim)
    with_encoder = train_step(shaped, make_model(shaped, "dept", backbone, text, vision=vision),
                              synthetic_batch(shaped, vocab, cfg.device, False, pixels=True))
    cached = train_step(shaped, make_model(shaped, "dept", backbone, text),
                        synthetic_batch(shaped, vocab, cfg.device, False))
    times = {name: median_time(step, cfg.steps, cfg.warmup) for name, step in
             (("with_encoder", with_encoder), ("cached", cached))}
    out = {"encoder": cfg.encoder, "image_size": cfg.image_size, "visual_tokens": shaped.visual_tokens,
           "train_step_s_with_encoder": times["with_encoder"], "train_step_s_cached": times["cached"],
           "speedup": times["with_encoder"] / times["cached"]}
    if cfg.paired:
        out["speedup_paired"] = paired_ratio(with_encoder, cached, cfg.paired, 0)
    return out


def machine(device: str) -> str:
    import os

    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text
