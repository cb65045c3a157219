"""``dept-vl bench``: speed and memory of every method side by side (BenchConfig), or with ``--quality`` their
accuracy, with ``--multitask`` each task alone against all together, with ``--data-scale`` training memory
against the feature cache's size, with ``--index-scale`` the cost of opening a large cache and task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .._dataclass import check_int, setting
from ..bench.data_scale import format_data_scale, format_index_scale, run_data_scale, run_index_scale
from ..bench.multitask import format_multitask, run_multitask
from ..bench.native import run_native_bench
from ..bench.quality import QUALITY_METHODS, format_quality, run_quality
from ..bench.report import format_table, write_report
from ..bench.speed import BenchConfig, run_bench
from ..bench.trl import format_trl, run_trl_bench
from ..errors import ConfigError
from .commands import say
from .flags import add_command, config_from


@dataclass
class BenchCommand:
    """``dept-vl bench``: speed and memory of pt / dept / adept / lora / full / the bare backbone side by side
    (--quality: accuracy; --multitask: multi-task against single-task; --data-scale: memory against cache size;
    --index-scale: loading at scale)."""

    output_dir: str = setting("runs/bench", "where bench.json, bench.png and the built backbones go")
    json: str | None = setting(None, "write the report here (default: OUTPUT/bench.json)")
    png: str | None = setting(None, "write the bar chart here (default: OUTPUT/bench.png)")
    quality: bool = setting(False, "train every method on easy-vqa and compare accuracy")
    quality_steps: int = setting(3000, "training steps per method")
    quality_methods: str = setting(",".join(QUALITY_METHODS), "methods to train, comma-separated")
    quality_config: str | None = setting(None, "the recipe every method trains with (default: the offline default), "
                                         "e.g. easyvqa_smollm2")
    quality_set: list[str] | None = setting(None, "a train setting for every method, e.g. k_shot=1200 (repeatable)",
                                            flag={"action": "append", "metavar": "KEY=VALUE"})
    multitask: bool = setting(False, "each task of the shapes suite alone, then all four together with as many "
                              "batches each: does the mix learn every task?")
    multitask_steps: int = setting(150, "batches per task")
    multitask_examples: int = setting(60, "examples per task and split")
    data_scale: bool = setting(False, "training memory on generated feature caches of growing size, two processes "
                               "sharing one, the data path's rate against the step's, cache build with 1 and 2 "
                               "processes")
    data_scale_images: str = setting("5000,20000,100000", "cache sizes (images) of --data-scale, comma-separated")
    data_scale_steps: int = setting(100, "training steps (batch 64) per --data-scale run")
    index_scale: bool = setting(False, "seconds and memory of opening a large cache's index and loading a VQAv2-size "
                                "task, on generated data")
    index_scale_images: int = setting(500_000, "images of the --index-scale cache")
    index_scale_questions: int = setting(658_111, "VQAv2-shaped questions of --index-scale (train2014 + val2014)")
    trl: bool = setting(False, "TRL's SFTTrainer on a native VLM (default a tiny LLaVA built offline; --vlm "
                        "smolvlm-shape | llava-clip-s-shape | tiny-vlm built offline with a processor, or a directory "
                        "with its processor): DePTPeftConfig against PEFT's PromptTuningConfig at DePT's budget, "
                        "paired (--paired turns)")
    trl_steps: int = setting(5, "training steps of each --trl turn")
    seeds: str = setting("0", "comma-separated seeds of the multitask and quality benches")
    speed: BenchConfig = setting(factory=BenchConfig, help="the speed bench", flag={"flatten": True})

    def __post_init__(self) -> None:
        for name in ("quality_steps", "trl_steps", "multitask_steps", "multitask_examples", "data_scale_steps", "index_scale_images",
                     "index_scale_questions"):
            check_int(name, getattr(self, name), 1)


def seeds_of(text: str, flag: str = "--seeds") -> tuple[int, ...]:
    try:
        return tuple(int(seed) for seed in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers, got {text!r}") from None


def train_settings(items: list[str] | None) -> dict:
    """``KEY=VALUE`` train settings (values read as YAML) as a dict; TrainConfig checks the keys and values."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--quality-set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def run_bench_command(args) -> None:
    """Speed and memory of pt / dept / adept / lora / full / the bare backbone side by side (--quality:
    accuracy)."""
    cfg = config_from(args, BenchCommand)
    out = Path(cfg.output_dir)
    if cfg.data_scale:
        report = run_data_scale(seeds_of(cfg.data_scale_images, "--data-scale-images"), cfg.data_scale_steps,
                                out / "data-scale", log=say)
        text, json_path, png = format_data_scale(report), cfg.json or out / "data-scale.json", None
    elif cfg.index_scale:
        report = run_index_scale(out / "data-scale", cfg.index_scale_images, cfg.index_scale_questions, log=say)
        text, json_path, png = format_index_scale(report), cfg.json or out / "index-scale.json", None
    elif cfg.multitask:
        report = run_multitask(out, cfg.multitask_steps, cfg.multitask_examples, seeds_of(cfg.seeds), log=say,
                               progress=True)
        text, json_path, png = format_multitask(report), cfg.json or out / "multitask.json", None
    elif cfg.quality:
        report = run_quality(out, cfg.quality_steps, cfg.quality_methods, log=say, config=cfg.quality_config,
                             seeds=seeds_of(cfg.seeds), progress=True, **train_settings(cfg.quality_set))
        text, json_path, png = format_quality(report), cfg.json or out / "bench.json", None
    elif cfg.trl:
        report = run_trl_bench(cfg.speed, out / "trl", cfg.trl_steps, log=say)
        text, json_path, png = format_trl(report), cfg.json or out / "trl.json", None
    elif cfg.speed.vlm:
        report = run_native_bench(cfg.speed, out / "backbones", log=say)
        text, json_path, png = format_table(report), cfg.json or out / "bench.json", cfg.png or out / "bench.png"
    else:
        report = run_bench(cfg.speed, out / "backbones", log=say)
        text, json_path, png = format_table(report), cfg.json or out / "bench.json", cfg.png or out / "bench.png"
    print(text)
    write_report(report, json_path, png)
    say(f"wrote {json_path}" + (f" and {png}" if png else ""))


def add_bench(sub) -> None:
    add_command(sub, "bench", BenchCommand, run_bench_command)
