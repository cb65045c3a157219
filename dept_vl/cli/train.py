"""``dept-vl train``: a recipe, a model, a method and ``--set`` overrides, then every TrainConfig and DataConfig
field as a flag."""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from .._dataclass import setting
from ..errors import ConfigError
from ..methods import list_methods
from ..runs.data_config import DataConfig
from ..runs.recipe import TrainConfig, list_recipes, resolve_recipe
from ..training.loop import train
from .commands import say
from .flags import add_command, given


@dataclass
class TrainCommand:
    """``dept-vl train``: train an adapter (DePT by default) on one task or several; everything goes to
    --output-dir."""

    config: str | None = setting(None, f"a recipe YAML (model:, train:, data:), or a packaged recipe by name: "
                                 f"{', '.join(list_recipes())}")
    model: str | None = setting(None, "a named model config (dept_vl/models/configs) or a JSON/YAML file")
    method: str | None = setting(None, "what to train (default: dept)", flag={"choices": list_methods()})
    set: list[str] | None = setting(None, "override a model setting, e.g. model.dept.r=16 (repeatable)",
                                    flag={"action": "append", "metavar": "model.KEY=VALUE"})
    vlm: str | None = setting(None, "train on a native Hugging Face VLM (LLaVA, Qwen2-VL, PaliGemma, Idefics3 / "
                              "SmolVLM, Florence-2, BLIP-2) by hub name or directory (with its processor), frozen; "
                              "default model config: native-vlm (l = 10, r = 8, s = 640)",
                              flag={"metavar": "NAME_OR_DIR"})
    train_projector: bool | None = setting(None, "with --vlm: also train the VLM's own multimodal projector (at "
                                           "--projection-lr)")
    resume: bool = setting(False, "continue from the latest checkpoint in --output-dir")
    overwrite: bool = setting(False, "replace the run that --output-dir holds")
    train: TrainConfig = setting(factory=TrainConfig, help="the run", flag={"flatten": True})
    data: DataConfig = setting(factory=DataConfig, help="your own data", flag={"flatten": True})


def model_overrides(flags: dict) -> dict:
    """``--method``, ``--vlm``, ``--train-projector`` and ``--set model.a.b=value`` (value parsed as YAML) as a
    nested dict."""
    nested: dict = {key: flags[key] for key in ("method", "vlm", "train_projector") if flags.get(key) is not None}
    items = flags.get("set")
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("model."):
            raise ConfigError(f"--set takes model.<key>=<value>, got {item!r}")
        *parents, leaf = key.split(".")[1:]
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def run_train(args) -> None:
    """Train an adapter (DePT by default) on one task or several; everything goes to --output-dir."""
    flags = given(args, TrainCommand)
    recipe = resolve_recipe(flags.get("config"), flags.get("train", {}), flags.get("model"), model_overrides(flags),
                            flags.get("data"))
    metrics = train(recipe, resume=bool(flags.get("resume")), overwrite=bool(flags.get("overwrite")), log=say,
                    progress=True)
    if metrics is not None:  # the main process (under accelerate launch, the others return None)
        print(json.dumps(metrics, indent=2))


def add_train(sub) -> None:
    add_command(sub, "train", TrainCommand, run_train)
