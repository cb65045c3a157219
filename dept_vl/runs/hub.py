"""``dept-vl push RUN REPO``: a run's model as a Hugging Face Hub repository that loads by name
(``dept-vl predict --checkpoint user/repo``, ``VisionLanguageModel.from_pretrained("user/repo")``).

The repository is adapter-only: the trained weights, ``dept_vl_config.json``, the recipe, and a model card
(``README.md``: task, metrics, base models, trainable budget, how to load). A backbone dept-vl built for the run
(the offline default's random T5) exists nowhere else, so it goes along under ``backbone/``; backbones named by hub
name are named, never copied; another local backbone is named, and the card says to pass ``--backbone PATH``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .._dataclass import setting
from ..errors import ConfigError, OutputError
from ..io import HUB_NAME, read_json, write_json, write_text
from ..models.names import parse_model_name
from ..models.random_t5 import ABOUT
from ..models.saved import MODEL_CONFIG_FILE
from .run_dir import SavedModel


@dataclass(kw_only=True)
class PushConfig:
    """``dept-vl push``: put a run's model on the Hugging Face Hub, with a model card."""

    run: str = setting(help="a run's output dir or its model/ dir", flag={"positional": True})
    repo: str = setting(help="the Hub repository, user/name (created if need be)", flag={"positional": True})
    private: bool = setting(False, "create the repository private")
    stage_only: str | None = setting(None, "write the repository's files into this directory and upload nothing")
    base_model: str | None = setting(None, "the Hub name (user/name) of the model the run was trained on, when it "
                                           "used a local copy: the card and config name it instead of the path")


def stage(saved: SavedModel, out: Path, repo: str, base_model: str | None = None, log=print) -> list[str]:
    """The repository's files in ``out`` (which must not hold anything); their names, sorted. ``base_model``: the
    Hub name that replaces a local base model's path (else a warning through ``log`` names the path)."""
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out} is not empty; give an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    for path in saved.directory.iterdir():
        if path.is_file():
            shutil.copy2(path, out / path.name)
    meta = name_base_model(read_json(out / MODEL_CONFIG_FILE), base_model, log)
    write_json(out / MODEL_CONFIG_FILE, meta)
    local = _local_backbone(meta)
    if local is not None:  # only on this disk: it goes along, and the config finds it beside itself
        shutil.copytree(local, out / "backbone")
        meta["backbone_relative"] = "backbone"
        meta.pop("text_backbone_relative", None)
        write_json(out / MODEL_CONFIG_FILE, meta)
    metrics = saved.run_root / "metrics.json"
    write_text(out / "README.md", model_card(meta, read_json(metrics) if metrics.is_file() else None, repo,
                                             local is not None))
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def name_base_model(meta: dict, base_model: str | None, log) -> dict:
    """``meta`` naming ``base_model`` (a Hub name) as its VLM or text backbone; without one, a warning when it names
    a local path that does not go along (one only this machine has)."""
    model, native = meta["model"], bool(meta["model"].get("vlm"))
    if base_model is not None:
        if not HUB_NAME.fullmatch(base_model):
            raise ConfigError(f"--base-model takes a Hub name, user/name (got {base_model!r})")
        if native:
            model["vlm"] = base_model
        else:
            model["text"] = {**model["text"], "backbone": base_model}
        meta.pop("backbone_relative", None)
        meta.pop("text_backbone_relative", None)
        return meta
    name = model["vlm"] if native else model["text"]["backbone"]
    if parse_model_name(name).is_local and _local_backbone(meta) is None:
        log(f"warning: the model card names the base model by a local path ({name}) that only this machine has; "
            "pass --base-model USER/NAME, the Hub name of the model it is a copy of")
    return meta


def _local_backbone(meta: dict) -> Path | None:
    """The model's backbone directory when dept-vl built it for the run (else None: it travels as a name)."""
    model = meta["model"]
    name = model.get("vlm") or model["text"]["backbone"]
    return Path(name) if parse_model_name(name).is_local and (Path(name) / ABOUT).is_file() else None


def model_card(meta: dict, metrics: dict | None, repo: str, backbone_included: bool) -> str:
    """A Hub model card: what the adapter is, what it scored, what it sits on, how to load it."""
    model = meta["model"]
    tasks = model.get("tasks") or []
    names = [model["vlm"]] if model.get("vlm") else [model["text"]["backbone"], model["vision"]["encoder"]]
    base = " + ".join(f"`{parse_model_name(n).display()}`" + (" (a local directory: pass --backbone PATH)" if
                      parse_model_name(n).is_local else "") for n in names)
    lines = ["---", "library_name: dept-vl", "tags: [dept, prompt-tuning, vision-language, peft]", "---", "",
             f"# {repo}", "", f"A **{model['method']}** adapter (dept-vl {meta.get('version', '?')}) for "
             f"{', '.join(tasks) or 'a vision-language task'}, trained on a frozen backbone.", "",
             "| | |", "|---|---|", f"| method | `{model['method']}` |",
             f"| base model | {'a random T5 built for the run, in backbone/' if backbone_included else base} |",
             f"| prompt | l = {model['dept']['prompt_length']}, r = {model['dept']['r']}, s = "
             f"{model['dept']['max_length']} |", f"| width d | {meta.get('hidden_size')} |"]
    if metrics:
        train = metrics.get("train", {})
        lines.append(f"| trainable parameters | {train.get('trainable_params', '?'):,} |" if isinstance(
            train.get("trainable_params"), int) else "| trainable parameters | ? |")
        for block in ("val", "test"):
            for key, value in (metrics.get(block) or {}).items():
                if isinstance(value, float):
                    lines.append(f"| {block} {key} | {value:.4f} |")
    lines += ["", "## Use", "", "```bash", "pip install dept-vl",
              f"dept-vl predict IMAGE \"your question\" --checkpoint {repo}", "```", "", "```python",
              "from dept_vl.models import load_model", "", f"model = load_model({repo!r})",
              'print(model.predict(["your question"], ["image.jpg"]))', "```", ""]
    return "\n".join(lines)


def push(config: PushConfig, log=print) -> str:
    """Stage the run's model (``stage``) and upload it to ``config.repo``; the repository's URL (or, with
    ``stage_only``, the staging directory)."""
    if not HUB_NAME.fullmatch(config.repo) or Path(config.repo).exists():
        raise ConfigError(f"push to a Hub repository name, user/name (got {config.repo!r})")
    saved = SavedModel.find(config.run)
    if config.stage_only:
        files = stage(saved, Path(config.stage_only), config.repo, config.base_model, log)
        log(f"staged {len(files)} files in {config.stage_only}: {', '.join(files[:8])}")
        return config.stage_only
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        files = stage(saved, Path(tmp) / "repo", config.repo, config.base_model, log)
        api = HfApi()
        with hub_errors(config.repo):
            api.create_repo(config.repo, private=config.private, exist_ok=True)
            api.upload_folder(repo_id=config.repo, folder_path=str(Path(tmp) / "repo"),
                              commit_message=f"dept-vl: {json.dumps(files)[:200]}")
    log(f"pushed {len(files)} files to https://huggingface.co/{config.repo}")
    return f"https://huggingface.co/{config.repo}"


HTTP_CLIENTS = ("httpx", "httpx2", "requests", "urllib3", "huggingface_hub")  # whose errors mean: the Hub said no


@contextlib.contextmanager
def hub_errors(repo: str) -> Iterator[None]:
    """An OutputError of one line for a push the Hub refused or could not be reached for."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - narrowed just below to the HTTP client's and the Hub's own errors
        if not isinstance(err, OSError) and type(err).__module__.split(".")[0] not in HTTP_CLIENTS:
            raise
        raise OutputError(f"cannot push to the Hugging Face Hub repository {repo}: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:200]}; check the network and your login (hf auth login), or "
                          "write the files with --stage-only DIR") from None


def push_to_hub(run: str | Path, repo: str, private: bool = False, log=print) -> str:
    """``push`` from Python: ``push_to_hub("runs/easyvqa-dept", "me/easyvqa-dept")``."""
    return push(PushConfig(run=str(run), repo=repo, private=private), log=log)
