"""``dept-vl bench --quality``: every method trained on easy-vqa with the same frozen backbone, steps and
trainable-parameter budget (``full`` excepted), test accuracy side by side."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data.tasks import get_task
from ..errors import ConfigError
from ..methods import Budget, get_method, list_methods, settings_at_budget
from ..models import TextBackbone
from ..models.random_t5 import materialize_random_backbone
from ..training.loop import train
from ..runs.recipe import resolve_recipe

QUALITY_METHODS = tuple(list_methods())  # every method --method offers: pt, dept, adept, lora, full


def run_quality(output_dir: str | Path, steps: int, methods: str = ",".join(QUALITY_METHODS), log=print,
                config: str | None = None, seeds: tuple[int, ...] = (0,), progress: bool | None = None,
                **train_overrides) -> dict:
    """Train each method with the recipe ``config`` (default: the offline default) for ``steps`` steps, once per
    seed, all on one frozen backbone at DePT's trainable budget (LoRA at the rank closest to it); return per-method,
    per-seed test metrics. Each method's settings come from its budget rule (LoRA: the rank closest to the budget)."""
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in QUALITY_METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(QUALITY_METHODS)}")
    out = Path(output_dir)
    base = resolve_recipe(config, {"task": "easyvqa", "max_steps": steps, **train_overrides})
    # One random backbone for every method (the train loop reuses it when it is already there)
    train_texts = [t for ex in get_task("easyvqa").load("train").examples for t in (ex.source, *ex.targets)]
    model_config = materialize_random_backbone(base.model, train_texts, out / "backbone")
    text = TextBackbone.from_config(model_config.text)
    budget = Budget.of(base.model.dept, text.hidden_size, text.model)
    at_budget = {m: budget_section(m, budget) for m in chosen}  # {section: settings} overrides, {} for pt / dept
    rows = []
    for method in chosen:
        for seed in seeds:
            log(f"quality: training {method} for {steps} steps, seed {seed}")
            run = out / method if len(seeds) == 1 else out / f"{method}-seed{seed}"
            recipe = resolve_recipe(config, {"task": "easyvqa", "max_steps": steps, "output_dir": str(run),
                                             "seed": seed, **train_overrides},
                                    model_overrides={"method": method, **at_budget[method],
                                                     "text": {"backbone": model_config.text.backbone, "random": None}})
            metrics = train(recipe, log=log, progress=progress)
            rows.append({"method": method, "seed": seed, "trainable_params": metrics["train"]["trainable_params"],
                         "seconds": metrics["train"]["seconds"], **metrics["test"]})
    return {"task": "easyvqa", "recipe": config or "easyvqa_offline", "backbone": base.model.text.backbone,
            "steps": steps, "seeds": list(seeds), "train": train_overrides, "dept_budget": budget.params,
            "settings_at_budget": {m: s for m, s in at_budget.items() if s}, "results": rows}


def budget_section(method: str, budget: Budget) -> dict:
    """``{section: settings}`` of ``method`` at ``budget``, as model-config overrides ({} where they are DePT's)."""
    settings = settings_at_budget(method, budget)
    return {} if settings is None else {get_method(method).section: dataclasses.asdict(settings)}


def format_quality(report: dict) -> str:
    lines = [f"{'method':<8}{'seed':>5}{'accuracy':>10}{'shape':>8}{'color':>8}{'yes/no':>8}{'params':>12}"
             f"{'seconds':>9}"]
    for r in report["results"]:
        lines.append(f"{r['method']:<8}{r.get('seed', 0):>5}{r['accuracy']:>10.4f}{r['accuracy/shape']:>8.4f}"
                     f"{r['accuracy/color']:>8.4f}"
                     f"{r['accuracy/yes/no']:>8.4f}{r['trainable_params']:>12,}{r['seconds']:>9.0f}")
    return "\n".join(lines)
