"""``dept-vl bench --multitask``: does one multi-task run learn every task as well as a run of that task alone?

On the shapes suite (``data/shapes_suite.py``: VQAv2, GQA, NLVR2 and COCO captions in their official formats, built
offline from easy-vqa's images), with one frozen random backbone shared by every run: each task trained alone for
``steps`` batches, then the four together for ``4 * steps`` batches (each task's share by ``--task-sampling``, as
many batches as alone for equal-sized tasks), each scored by its own metric on its test split. Reported: the
scores, and multi / single per task (the target: >= 0.80 on every task).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..data.shapes_suite import write_shapes_suite
from ..data.tasks import get_task
from ..models.random_t5 import materialize_random_backbone
from ..training.loop import train
from ..runs.recipe import resolve_recipe

TASKS = ("vqa", "gqa", "nlvr2", "caption")


def run_multitask(output_dir: str | Path, steps: int = 150, examples: int = 60, seeds=(0,), method: str = "dept",
                  log=print, model_overrides: dict | None = None, progress: bool | None = None,
                  **train_overrides) -> dict:
    """Train every task alone and all together, per seed; return the per-task scores and ratios. ``model_overrides``
    and ``train_overrides`` change the ``shapes_multitask`` recipe (e.g. ``{"prompt_per_task": False}``)."""
    out = Path(output_dir)
    data_dirs = {task: str(d) for task, d in write_shapes_suite(out / "data", examples).items()}
    model_overrides = {"method": method, **(model_overrides or {})}
    base = resolve_recipe("shapes_multitask", {"data_dir": data_dirs}, model_overrides=model_overrides)
    texts = [t for task in TASKS for ex in get_task(task).load("train", data_dirs[task]).examples
             for t in (ex.source, *ex.targets)]
    backbone = materialize_random_backbone(base.model, texts, out / "backbone").text.backbone  # one for all runs
    rows = []
    for seed in seeds:
        def run(tasks: tuple[str, ...], max_steps: int) -> dict:
            log(f"multitask bench: seed {seed}, {'+'.join(tasks)}, {max_steps} steps")
            recipe = resolve_recipe("shapes_multitask", {
                "task": ",".join(tasks), "data_dir": data_dirs, "max_steps": max_steps, "seed": seed,
                "output_dir": str(out / f"seed{seed}" / "+".join(tasks)), "cache_dir": str(out / "cache"),
                **train_overrides}, model_overrides={**model_overrides, "text": {"backbone": backbone, "random": None}})
            return train(recipe, overwrite=True, log=log, progress=progress)["test"]

        single = {task: run((task,), steps)[get_task(task).metric] for task in TASKS}
        mixed = run(TASKS, steps * len(TASKS))
        multi = {task: mixed[f"{task}/{get_task(task).metric}"] for task in TASKS}
        rows.append({"seed": seed, "single": single, "multi": multi,
                     "ratio": {t: multi[t] / single[t] if single[t] else None for t in TASKS}})
    ratios = {t: [r["ratio"][t] for r in rows if r["ratio"][t] is not None] for t in TASKS}
    mean = {t: statistics.mean(values) if values else None for t, values in ratios.items()}  # None: scored 0 alone
    return {"tasks": list(TASKS), "steps_per_task": steps, "examples_per_split": examples, "method": method,
            "model_overrides": model_overrides, "train_overrides": train_overrides, "runs": rows, "mean_ratio": mean,
            "target_met": all(r is not None and r >= 0.8 for row in rows for r in row["ratio"].values())}


def format_multitask(report: dict) -> str:
    lines = [f"{'seed':<6}" + "".join(f"{t + ' alone':>15}{t + ' mixed':>15}{'ratio':>7}" for t in report["tasks"])]
    for row in report["runs"]:
        lines.append(f"{row['seed']:<6}" + "".join(f"{row['single'][t]:>15.4f}{row['multi'][t]:>15.4f}"
                                                    f"{row['ratio'][t] or 0:>7.2f}" for t in report["tasks"]))
    lines.append("mean multi / single: " + ", ".join(f"{t} {'-' if v is None else f'{v:.2f}'}"
                                                     for t, v in report["mean_ratio"].items()))
    return "\n".join(lines)
