"""Module paths that earlier READMEs documented (dept-vl 0.1), kept importable after the moves.

``import dept_vl.tasks`` (or ``dept_vl.train``, ...) gives the module at its new path, with a DeprecationWarning
naming it; submodules follow (``dept_vl.tasks.base`` is ``dept_vl.data.tasks.base``), so no module is ever loaded
twice.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "dept_vl.tasks": "dept_vl.data.tasks",
    "dept_vl.metrics": "dept_vl.data.metrics",
    "dept_vl.feature_cache": "dept_vl.data.feature_cache",
    "dept_vl.train": "dept_vl.training.loop",
    "dept_vl.train_config": "dept_vl.runs.recipe",
    # later 0.1 paths: DePT alone was method/, the method registry models/methods.py (both are methods/ now);
    # recipes and run directories were in training/ (now runs/), prediction and evaluation too (now inference/)
    "dept_vl.method": "dept_vl.methods",
    "dept_vl.models.methods": "dept_vl.methods.registry",
    "dept_vl.training.recipe": "dept_vl.runs.recipe",
    "dept_vl.training.run_dir": "dept_vl.runs.run_dir",
    "dept_vl.training.evaluate": "dept_vl.inference.evaluate",
    "dept_vl.training.predict": "dept_vl.inference.predict",
}


def new_name(name: str) -> str | None:
    """The current path of the 0.1 module ``name`` (or of a submodule of one), else None."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves a 0.1 path to the module at its new path (the same object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if new_name(fullname) else None

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module) -> None:
        target = new_name(module.__name__)
        warnings.warn(f"{module.__name__} moved to {target}; import it from there", DeprecationWarning,
                      stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(target)


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
