"""``dept-vl bench --quality``: every method trained on easy-vqa with the same frozen backbone, steps and
trainable-parameter budget (``full`` excepted), test accuracy side by side."""

from __future__ import annotations

from pathlib import Path

from ..data.tasks import get_task
from ..errors import ConfigError
from ..models import TextBackbone, list_methods
from ..models.methods import lora_rank_for_budget
from ..models.random_t5 import materialize_random_backbone
from ..training.loop import train
from ..training.recipe import resolve_recipe

QUALITY_METHODS = tuple(list_methods())  # every method --method offers: pt, dept, lora, full


def run_quality(output_dir: str | Path, steps: int, methods: str = ",".join(QUALITY_METHODS), log=print,
                **train_overrides) -> dict:
    """Train each method with the offline default recipe (``max_steps=steps``); return per-method metrics."""
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in QUALITY_METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(QUALITY_METHODS)}")
    out = Path(output_dir)
    base = resolve_recipe(None, {"task": "easyvqa", "max_steps": steps, **train_overrides})
    # One random backbone for every method (the train loop reuses it when it is already there)
    train_texts = [t for ex in get_task("easyvqa").load("train").examples for t in (ex.source, *ex.targets)]
    model_config = materialize_random_backbone(base.model, train_texts, out / "backbone")
    text = TextBackbone.from_pretrained(model_config.text.backbone)
    budget = base.model.dept.num_parameters(text.hidden_size)
    lora_r = lora_rank_for_budget(text.model, budget)
    rows = []
    for method in chosen:
        log(f"quality: training {method} for {steps} steps")
        recipe = resolve_recipe(None, {"task": "easyvqa", "max_steps": steps, "output_dir": str(out / method),
                                       **train_overrides},
                                model_overrides={"method": method, "lora": {"r": lora_r},
                                                 "text": {"backbone": model_config.text.backbone, "random": None}})
        metrics = train(recipe, log=log)
        rows.append({"method": method, "trainable_params": metrics["train"]["trainable_params"],
                     "seconds": metrics["train"]["seconds"], **metrics["test"]})
    return {"task": "easyvqa", "steps": steps, "dept_budget": budget, "lora_r": lora_r, "results": rows}


def format_quality(report: dict) -> str:
    lines = [f"{'method':<8}{'accuracy':>10}{'shape':>8}{'color':>8}{'yes/no':>8}{'params':>12}{'seconds':>9}"]
    for r in report["results"]:
        lines.append(f"{r['method']:<8}{r['accuracy']:>10.4f}{r['accuracy/shape']:>8.4f}{r['accuracy/color']:>8.4f}"
                     f"{r['accuracy/yes/no']:>8.4f}{r['trainable_params']:>12,}{r['seconds']:>9.0f}")
    return "\n".join(lines)
