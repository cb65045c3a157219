"""The entry point lmms-eval reads (``[project.entry-points."lmms_eval.models"]``): the model ``dept_vl`` and the
class that implements it, imported only when a run names it."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="dept_vl", simple_class_path="dept_vl.integrations.lmms_model.DeptVL")
