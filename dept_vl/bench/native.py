"""``dept-vl bench --vlm SHAPE``: the methods side by side on a native VLM (the vision tower runs every step,
frozen, unless --cache-features; the method acts on the merged sequence), at DePT's budget: training step,
generation, peak memory, counted FLOPs, and the DePT / PT step and generation ratios measured paired, beside the ratio
of their counted FLOPs (the floor a method that only shortens the sequence can reach)."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch

from ..errors import ConfigError
from ..methods import Budget, DePTConfig, attach_dept, get_method, settings_at_budget
from ..methods.native import NativeVLMWrapper, language_model, native_family, unfreeze_projector
from .native_scale import LLAVA_SHAPES, build_llava_shape, scale_variants
from .speed import BenchConfig, machine
from .timing import PeakMemory, TrainStep, median_time, paired_ratio, steady_rss, sync

VLM_SHAPES = {  # (vision tower, text model, scale factor): SmolVLM-256M-Instruct's values, and a tiny one
    "smolvlm-shape": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=512, patch_size=16),
                      dict(vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                           num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048), 4),
    "tiny-vlm": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                      patch_size=8),
                 dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512), 2),
}
NATIVE_METHODS = ("pt", "dept", "adept", "lora", "bare")


def build_vlm(name: str, directory: Path) -> str:
    """A named shape saved (random weights) to ``directory``; anything else returned as given."""
    if name in LLAVA_SHAPES:
        return build_llava_shape(name, directory)
    if name not in VLM_SHAPES:
        return name
    if not (directory / "config.json").is_file():
        import transformers as T

        vision, text, scale = VLM_SHAPES[name]
        config = T.SmolVLMConfig(vision_config=T.SmolVLMVisionConfig(**vision), scale_factor=scale,
                                 text_config=T.LlamaConfig(**text, pad_token_id=0, bos_token_id=1, eos_token_id=2),
                                 image_token_id=text["vocab_size"] - 1)
        torch.manual_seed(0)
        T.SmolVLMForConditionalGeneration(config).save_pretrained(directory)
    return str(directory)


def synthetic_inputs(cfg: BenchConfig, model, device) -> tuple[dict, int]:
    """A batch of one image and ``text_length`` text tokens per example, as the processor lays it out
    ([BOS, image placeholders, text]); and the visual tokens per image."""
    family, config = native_family(model), model.config
    size = config.vision_config.image_size
    shape = (cfg.batch_size, 1, 3, size, size) if family.name.startswith("Idefics3") else (cfg.batch_size, 3, size, size)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(*shape, generator=g)
    with torch.no_grad():
        features = model.model.get_image_features(pixels[:1])
    features = getattr(features, "pooler_output", features)
    visual = (features[0] if isinstance(features, (list, tuple)) else features).reshape(-1, features_width(model)).shape[0]
    image = getattr(config, "image_token_id", None)
    vocab = config.get_text_config().vocab_size
    text = torch.randint(10, min(vocab - 10, 1000), (cfg.batch_size, cfg.text_length), generator=g)
    ids = torch.cat([torch.ones(cfg.batch_size, 1, dtype=torch.long), torch.full((cfg.batch_size, visual), image), text], 1)
    labels = torch.cat([torch.full((cfg.batch_size, 1 + visual + cfg.text_length - cfg.answer_length), -100),
                        text[:, -cfg.answer_length:]], 1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels, "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}, visual


def features_width(model) -> int:
    return model.get_input_embeddings().weight.shape[1]


def attach(cfg: BenchConfig, method: str, vlm, budget: Budget):
    """``method`` on ``vlm`` at DePT's budget (LoRA on a copy of its language model)."""
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    chosen = get_method(method)
    if chosen.adapter is not None:
        wrapped = attach_dept(vlm, dept, method=method, settings=settings_at_budget(method, budget))
        if cfg.train_projector:
            unfreeze_projector(vlm)
        if method == "bare":  # nothing else trains here (no projection): let the backward pass reach the prefix
            wrapped.dept.prompt_embeddings.requires_grad_(True)
        return wrapped
    copied = copy.deepcopy(vlm)
    chosen.backbone(language_model(copied), settings_at_budget(method, budget))
    return NativeVLMWrapper(copied, None, native_family(copied), method)


class Generation:
    """Generation of ``answer_length`` tokens for the batch (KV cache); calling it returns its seconds."""

    def __init__(self, cfg: BenchConfig, wrapped, batch: dict):
        self.cfg, self.wrapped, self.device = cfg, wrapped, torch.device(cfg.device)
        self.inputs = {k: v for k, v in batch.items() if k != "labels"}

    def __call__(self) -> float:
        self.wrapped.eval()
        sync(self.device)
        start = time.perf_counter()
        self.wrapped.generate(**self.inputs, max_new_tokens=self.cfg.answer_length,
                              min_new_tokens=self.cfg.answer_length, do_sample=False)
        sync(self.device)
        return time.perf_counter() - start


def measure(cfg: BenchConfig, wrapped, batch: dict) -> tuple[dict, TrainStep, Generation]:
    step, generation = TrainStep(wrapped, batch, cfg.device), Generation(cfg, wrapped, batch)
    with PeakMemory(torch.device(cfg.device)) as memory:  # in this process: the vision tower and the LM are shared
        for _ in range(cfg.warmup + 1):
            step()
    seconds = median_time(step, cfg.steps, 0)
    row = {"train_step_s": seconds, "infer_s": median_time(generation, cfg.steps, cfg.warmup),
           "peak_mem_mb": memory.mb, "mem_kind": memory.kind, "samples_per_s": cfg.batch_size / seconds,
           "trainable_params": sum(p.numel() for p in wrapped.parameters() if p.requires_grad),
           "train_gflops": step.flops() / 1e9}
    return row, step, generation


def _memory_child(cfg: BenchConfig, method: str, path: str, queue) -> None:
    """Child-process body: the peak memory of ``method``'s first training steps on the VLM at ``path``, with
    ``steady_rss`` (freed memory goes back to the system, so the peak is this method's)."""
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    steady_rss()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    vlm = AutoModelForImageTextToText.from_pretrained(path).to(cfg.device).eval().requires_grad_(False)
    batch, _ = synthetic_inputs(cfg, vlm, cfg.device)
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    step = TrainStep(attach(cfg, method, vlm, Budget.of(dept, features_width(vlm), language_model(vlm))), batch,
                     cfg.device)
    with PeakMemory(torch.device(cfg.device)) as memory:
        for _ in range(cfg.warmup + 1):
            step()
    queue.put(memory.mb)


def isolated_memory(cfg: BenchConfig, method: str, path: str) -> float:
    """On CPU, each method's peak RSS in a fresh process: in the shared one, a method run after another reuses the
    memory that one freed and reads as 0 MB."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(cfg, method, path, queue))
    process.start()
    try:
        return queue.get(timeout=3600)
    finally:
        process.join()


def run_native_bench(cfg: BenchConfig, workdir: str | Path = ".bench", log=print) -> dict:
    """Every method of ``cfg.methods`` that a native VLM takes, on ``cfg.vlm``; the JSON-able report."""
    from transformers import AutoModelForImageTextToText

    methods = [m.strip() for m in cfg.methods.split(",") if m.strip() in NATIVE_METHODS]
    if not methods:
        raise ConfigError(f"--vlm benches the methods {', '.join(NATIVE_METHODS)}")
    path = build_vlm(cfg.vlm, Path(workdir) / cfg.vlm)
    vlm = AutoModelForImageTextToText.from_pretrained(path).to(cfg.device).eval().requires_grad_(False)
    batch, visual = synthetic_inputs(cfg, vlm, cfg.device)
    if 1 + visual + cfg.text_length > cfg.max_length:
        raise ConfigError(f"{visual} visual + {cfg.text_length} text tokens exceed max_length {cfg.max_length}")
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    budget = Budget.of(dept, features_width(vlm), language_model(vlm))
    rows, timers = [], {}
    for method in methods:
        log(f"bench {method} on {cfg.vlm} ...")
        torch.manual_seed(0)
        wrapped = attach(cfg, method, vlm, budget)
        row, *timers[method] = measure(cfg, wrapped, batch)
        if torch.device(cfg.device).type == "cpu":
            row["peak_mem_mb"], row["mem_kind"] = isolated_memory(cfg, method, path), "cpu_peak_rss_above_start_fresh"
        rows.append({"method": method, **row})
        if method == "dept":
            extra_rows, extra_pairs = scale_variants(cfg, wrapped, batch, timers[method][0], log)
    base = next((r for r in rows if r["method"] == "pt"), None)
    for row in rows:
        for key in ("train_step_s", "infer_s", "peak_mem_mb", "trainable_params", "train_gflops"):
            row[f"{key}_vs_pt"] = row[key] / base[key] if base and base[key] else None
    report = {"machine": machine(cfg.device), "config": dataclasses.asdict(cfg), "vlm": cfg.vlm,
              "visual_tokens": visual, "dept_budget": budget.params, "results": rows, "paired": []}
    if "dept" in timers and extra_rows:  # cached features, gradient checkpointing: beside DePT's own step
        report["scale"] = {"results": extra_rows, "paired": extra_pairs}
    if cfg.paired and {"dept", "pt"} <= set(timers):
        log("bench dept / pt, paired ...")
        pair = {"a": "dept", "b": "pt", "pairs": cfg.paired}
        for i, kind in enumerate(("step", "infer")):
            ratio = paired_ratio(timers["dept"][i], timers["pt"][i], cfg.paired, cfg.warmup)
            pair.update({f"{kind}_ratio_{k}": v for k, v in ratio.items() if k != "pairs"})
        pair["flops_ratio"] = next(r["train_gflops_vs_pt"] for r in rows if r["method"] == "dept")
        report["paired"].append(pair)
    return report
