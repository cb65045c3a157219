"""The run directory (``--output-dir``): the one place that knows its layout.

    OUTPUT/recipe.yaml                     the resolved recipe (model: + train:)
    OUTPUT/model/                          the chosen weights (save_pretrained) + recipe.yaml: what eval / predict load
    OUTPUT/checkpoints/                    resumable checkpoints (training/state.py)
    OUTPUT/backbone/                       the random T5 of an offline run (text.backbone: random)
    OUTPUT/metrics.json                    train / val / test metrics
    OUTPUT/predictions-<task>-<split>.jsonl
    OUTPUT/metrics-<task>-<split>.json     written by ``dept-vl eval``
    OUTPUT/curves.png, OUTPUT/logs/        learning curves, TensorBoard

``SavedModel.find(path)`` turns whatever a user points ``--checkpoint`` at (a run directory, its ``model/``, a step
checkpoint, or a directory written by ``save_pretrained``) into the model directory and the recipe saved beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError, ConfigError
from ..io import write_dir_atomically, write_json, write_text
from ..models import VisionLanguageModel
from ..models.vl_model import MODEL_CONFIG_FILE
from .recipe import Recipe

RECIPE_FILE = "recipe.yaml"


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
        """The run directory ``train.output_dir`` names, its ``{task}`` and ``{method}`` filled in."""
        return cls(recipe.train.output_dir.format(task="+".join(recipe.train.tasks), method=recipe.model.method))

    def predictions(self, task: str, split: str) -> Path:
        return self.root / f"predictions-{task}-{split}.jsonl"

    def eval_metrics(self, task: str, split: str) -> Path:
        return self.root / f"metrics-{task}-{split}.json"

    def save_recipe(self, recipe: Recipe) -> None:
        recipe.save(self.recipe)

    def save_model(self, save_weights: Callable[[Path], None], recipe_text: str) -> None:
        """``model/``: ``save_weights(directory)`` plus the recipe, put in place complete or not at all."""
        write_dir_atomically(self.model, lambda tmp: (save_weights(tmp), write_text(tmp / RECIPE_FILE, recipe_text)))

    def save_metrics(self, metrics: dict) -> None:
        write_json(self.metrics, metrics)


@dataclass
class SavedModel:
    """A trained model on disk: its directory (``dept_vl_config.json`` + weights) and the recipe it was trained
    with (None for a bare ``save_pretrained`` directory)."""

    directory: Path
    recipe: Recipe | None

    @classmethod
    def find(cls, path: str | Path) -> "SavedModel":
        path = Path(path)
        if (path / "model").is_dir() and not (path / MODEL_CONFIG_FILE).exists():
            path = path / "model"  # a run's output directory
        if not path.is_dir():
            raise CheckpointError(f"checkpoint directory {path} does not exist")
        if not (path / MODEL_CONFIG_FILE).is_file():
            raise CheckpointError(f"no {MODEL_CONFIG_FILE} in {path} (is this a dept-vl checkpoint directory?)")
        recipe = Recipe.from_file(path / RECIPE_FILE) if (path / RECIPE_FILE).is_file() else None
        return cls(path, recipe)

    def load(self, backbone: str | None = None) -> VisionLanguageModel:
        """The model, its text backbone loaded from ``backbone`` when given."""
        return VisionLanguageModel.from_pretrained(self.directory, backbone=backbone)

    @property
    def tasks(self) -> list[str]:
        """The tasks it was trained on (none known without a recipe)."""
        return self.recipe.train.tasks if self.recipe is not None else []

    def task(self, name: str | None = None) -> str:
        """``name``, or the one task it was trained on."""
        if name is not None:
            return name
        if len(self.tasks) != 1:
            raise ConfigError("name the task with --task (the checkpoint does not say which one)")
        return self.tasks[0]

    def data_dir(self, task: str) -> str | None:
        """The data directory it was trained with for ``task`` (None if unknown)."""
        return self.recipe.train.data_dir_for(task) if task in self.tasks else None
