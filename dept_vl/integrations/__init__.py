"""dept-vl inside other tools' evaluation harnesses. Nothing here is imported by ``dept_vl`` itself: each tool's
plugin imports its tool (lmms-eval: ``lmms_plugin`` and ``lmms_model``, through the ``lmms_eval.models`` entry
point of the ``lmms-eval`` extra)."""
