"""The entry point lmms-eval reads (``[project.entry-points."lmms_eval.models"]``): the model ``dept_vl`` and the
class that implements it, imported only when a run names it."""

from __future__ import annotations


def manifest():
    """lmms-eval's ``ModelManifest`` of the model ``dept_vl``. lmms-eval calls this while its model registry loads;
    its class is imported here, not when this module is (importing this module first would otherwise start that
    registry loading, which imports this module again, half made)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="dept_vl", simple_class_path="dept_vl.integrations.lmms_model.DeptVL")
