"""The run directory (``--output-dir``): the one place that knows its layout.

    OUTPUT/recipe.yaml                     the resolved recipe (model: + train:)
    OUTPUT/model/                          the chosen weights (save_pretrained) + recipe.yaml: what eval / predict load
    OUTPUT/checkpoints/                    resumable checkpoints (training/state.py)
    OUTPUT/backbone/                       the random T5 of an offline run (text.backbone: random)
    OUTPUT/metrics.json                    train / val / test metrics
    OUTPUT/predictions-<task>-<split>.jsonl
    OUTPUT/curves.png, OUTPUT/logs/        learning curves, TensorBoard
    OUTPUT/eval/                           what ``dept-vl eval`` writes: metrics-<task>-<split>[-first<N>].json and
                                           predictions-<task>-<split>[-first<N>].jsonl; never the files above
    OUTPUT/.lock                           held by the training process that owns the directory

One run owns a directory: ``claim`` refuses a directory that holds a run unless told to continue it (--resume) or
to replace it (--overwrite), and locks it for the run's lifetime.

``SavedModel.find(path)`` turns whatever a user points ``--checkpoint`` at (a run directory, its ``model/``, a step
checkpoint, or a directory written by ``save_pretrained``) into the model directory and the recipe saved beside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import CheckpointError, ConfigError, OutputError
from ..data.tasks import DataSpec, get_task, list_tasks
from ..io import exclusive_lock, local_or_hub, read_json, write_dir_atomically, write_json, write_text
from ..models import ModelConfig, load_model
from ..models.saved import MODEL_CONFIG_FILE, is_model_dir, read_meta
from .recipe import Recipe

RECIPE_FILE = "recipe.yaml"
RUN_MARKERS = (RECIPE_FILE, "model", "checkpoints", "metrics.json")  # any of them: the directory holds a run
# what a PEFT adapter (no recipe, no task) answers: the question as written, about one image
PEFT_TASK = DataSpec(name="question", train="", takes_question=True, num_images=1)


class RunDir:
    """Paths and writers of one run's output directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.model = self.root / "model"
        self.checkpoints = self.root / "checkpoints"
        self.backbone = self.root / "backbone"
        self.logs = self.root / "logs"
        self.curves = self.root / "curves.png"
        self.metrics = self.root / "metrics.json"
        self.recipe = self.root / RECIPE_FILE

    @classmethod
    def for_recipe(cls, recipe: Recipe) -> "RunDir":
        """The run directory ``train.output_dir`` names, its ``{name}``, ``{task}`` and ``{method}`` filled in."""
        return cls(recipe.train.output_dir.format(name=recipe.run_name, task="+".join(recipe.tasks),
                                                  method=recipe.model.method))

    def predictions(self, task: str, split: str) -> Path:
        return self.root / f"predictions-{task}-{split}.jsonl"

    def eval_outputs(self, splits: dict[str, str], role: str, limit: int = 0, directory: str | Path | None = None,
                     overwrite: bool = False) -> dict:
        """Where ``dept-vl eval`` of ``splits`` (task -> split) writes, in ``directory`` (default ``OUTPUT/eval``):
        ``{"metrics": metrics-<tasks>-<role>[-first<N>].json, "predictions": {task: predictions-<task>-<split>
        [-first<N>].jsonl}}``. Files already there are replaced only with ``overwrite``."""
        directory = Path(directory) if directory is not None else self.root / "eval"
        first = f"-first{limit}" if limit else ""
        paths = {"metrics": directory / f"metrics-{'+'.join(splits)}-{role}{first}.json",
                 "predictions": {t: directory / f"predictions-{t}-{split}{first}.jsonl" for t, split in splits.items()}}
        there = [p for p in (paths["metrics"], *paths["predictions"].values()) if p.exists()]
        if there and not overwrite:
            raise OutputError(f"{there[0]} exists; pass --overwrite to replace it, or --output-dir to write elsewhere")
        _writable_dir(directory, "pass --output-dir to write elsewhere")
        return paths

    # ---- owning the directory ------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_MARKERS)

    @contextlib.contextmanager
    def claim(self, resume: bool = False, overwrite: bool = False) -> Iterator["RunDir"]:
        """Own the directory for a training run: locked while the block runs; a directory holding a run is
        continued (``resume``), emptied of that run's files (``overwrite``), or refused."""
        self.check_free(resume, overwrite)
        made = not self.root.exists()
        _writable_dir(self.root, "pass another --output-dir")
        try:
            with exclusive_lock(self.root / ".lock", f"run directory {self.root}"):
                if self.holds_run() and not resume:
                    if not overwrite:
                        raise OutputError(self._taken())
                    self.clear()
                yield self
        except BaseException:
            if made:  # a run that failed before it wrote anything leaves no directory behind
                self._remove_if_bare()
            raise

    def _remove_if_bare(self) -> None:
        """Remove the directory when it holds nothing but its lock file."""
        with contextlib.suppress(OSError):
            if {p.name for p in self.root.iterdir()} <= {".lock"}:
                (self.root / ".lock").unlink(missing_ok=True)
                self.root.rmdir()

    def check_free(self, resume: bool = False, overwrite: bool = False) -> None:
        """OutputError unless a run may train here: the directory is none or a directory, and holds no run or is
        to be continued (``resume``) or replaced (``overwrite``); a run in progress there is named as such. Cheap
        and writes nothing new: ``train`` asks before reading any data."""
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"--output-dir {self.root} is a file, not a directory")
        if self.holds_run() and not resume and not overwrite:
            with exclusive_lock(self.root / ".lock", f"run directory {self.root}"):  # "in use" first, if it is
                raise OutputError(self._taken())

    def _taken(self) -> str:
        return f"{self.root} already holds a run; pass --resume to continue it or --overwrite to replace it"

    def clear(self) -> None:
        """Remove a run's own files (and nothing else the directory holds)."""
        for name in ("model", "checkpoints", "backbone", "logs", "eval"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for pattern in (RECIPE_FILE, "metrics.json", "curves.png", "predictions-*.jsonl", ".*.tmp"):
            for path in self.root.glob(pattern):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def save_recipe(self, recipe: Recipe) -> None:
        recipe.save(self.recipe)

    def save_model(self, save_weights: Callable[[Path], None], recipe_text: str) -> None:
        """``model/``: ``save_weights(directory)`` plus the recipe, put in place complete or not at all."""
        write_dir_atomically(self.model, lambda tmp: (save_weights(tmp), write_text(tmp / RECIPE_FILE, recipe_text)))

    def save_metrics(self, metrics: dict) -> None:
        write_json(self.metrics, metrics)


def _writable_dir(directory: Path, remedy: str) -> None:
    """Create ``directory`` if need be; OutputError naming it (and ``remedy``) where that or writing in it fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write in {directory} ({err.strerror or err}); {remedy}") from None


@dataclass
class SavedModel:
    """A trained model on disk: its directory (``dept_vl_config.json`` + weights) and the recipe it was trained
    with (None for a bare ``save_pretrained`` directory)."""

    directory: Path
    recipe: Recipe | None

    @classmethod
    def find(cls, path: str | Path) -> "SavedModel":
        """A run directory, its ``model/``, a step checkpoint, a ``save_pretrained`` directory, or a Hugging Face Hub
        repository holding one (``user/repo``: from the local cache, or downloaded unless offline)."""
        path = local_or_hub(path)
        if (path / "model").is_dir() and not is_model_dir(path):
            path = path / "model"  # a run's output directory
        if not path.is_dir():
            raise CheckpointError(f"checkpoint directory {path} does not exist")
        if not is_model_dir(path):
            raise CheckpointError(f"no {MODEL_CONFIG_FILE} in {path} (is this a dept-vl checkpoint directory, or a "
                                  "PEFT adapter of DePT / ADePT?)")
        recipe = Recipe.from_file(path / RECIPE_FILE) if (path / RECIPE_FILE).is_file() else None
        return cls(path, recipe)

    def load_config(self):
        """The saved ModelConfig (nothing is loaded)."""
        return ModelConfig.from_dict(read_meta(self.directory)["model"])

    @property
    def run_root(self) -> Path:
        """The run directory this model belongs to (a run's ``model/``: the run; else the model directory)."""
        parent = self.directory.parent
        return parent if self.directory.name == "model" and (parent / RECIPE_FILE).is_file() else self.directory

    def load(self, backbone: str | None = None):
        """The model (``VisionLanguageModel`` or ``NativeVisionLanguageModel``), its backbone loaded from
        ``backbone`` when given."""
        return load_model(self.directory, backbone=backbone)

    @property
    def tasks(self) -> list[str]:
        """The tasks it was trained on: its recipe's, or those its config names (none known for a bare model)."""
        if self.recipe is not None:
            return self.recipe.tasks
        if self.is_peft_adapter:
            return [PEFT_TASK.name]
        return list(read_json(self.directory / MODEL_CONFIG_FILE).get("model", {}).get("tasks", []))

    @property
    def is_peft_adapter(self) -> bool:
        """A PEFT adapter directory (made by Trainer / TRL), not one dept-vl wrote."""
        return not (self.directory / MODEL_CONFIG_FILE).is_file()

    def task(self, name: str | None = None) -> str:
        """``name``, or the one task it was trained on."""
        if name is not None:
            return name
        if len(self.tasks) > 1:
            raise ConfigError(f"this checkpoint was trained on {', '.join(self.tasks)}: name one with --task")
        if not self.tasks:
            raise ConfigError(f"name the task with --task (the checkpoint does not say which one): "
                              f"{', '.join(list_tasks())}")
        return self.tasks[0]

    def own_data(self) -> dict:
        """The run's own data sets (``--data``): name -> DataSpec (empty for built-in tasks or a bare model)."""
        if self.recipe is not None:
            return self.recipe.own_data()
        return {PEFT_TASK.name: PEFT_TASK} if self.is_peft_adapter else {}

    def get_task(self, name: str | None = None):
        """The task object of ``name`` (default: the one task it was trained on), its own data included."""
        return get_task(self.task(name), own=self.own_data())

    def data_dir(self, task: str) -> str | None:
        """The data directory it was trained with for ``task`` (None if unknown)."""
        return self.recipe.data_dir_for(task) if task in self.tasks else None
