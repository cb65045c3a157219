"""The fast path: compiled, shape-bucketed training steps and generation (``--compile``)."""

from .path import BACKENDS, MODES, FastPath, enable, for_inference, graph_breaks_in, resolve_device, use_compile

__all__ = ["BACKENDS", "MODES", "FastPath", "enable", "for_inference", "graph_breaks_in", "resolve_device", "use_compile"]
