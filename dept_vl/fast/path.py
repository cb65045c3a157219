"""``FastPath``: a model's training step and greedy generation compiled with ``torch.compile`` over bucketed shapes.

What it does to a ``VisionLanguageModel`` (``apply``):

- sequence lengths are bucketed (``models/buckets.py``): text and target lengths are rounded up, so a whole run
  compiles one graph per bucket, not one per batch; the padding is masked and never meets DePT's A;
- the model's call (forward + loss; AOTAutograd compiles the backward with it) is compiled in place with static
  shapes (``nn.Module.compile``: the state dict keeps its keys);
- greedy generation runs through a static KV cache whose decode step is compiled (Hugging Face ``generate`` with
  ``cache_implementation="static"``), so a short answer does not pay Python per layer per token.

Every graph dynamo hands to the backend is counted (``graphs``), and so are graph breaks (``graph_breaks``).
"""

from __future__ import annotations

import time

import torch

from ..errors import ConfigError

BACKENDS = ("inductor", "aot_eager", "eager")  # aot_eager / eager: the same graphs without code generation
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None): CUDA when there is one, else the CPU; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA device that torch can use (--device cpu)")
    return chosen


def use_compile(flag: bool | None, device) -> bool:
    """``--compile`` / ``--no-compile``, or when neither was given, on for CUDA and off elsewhere."""
    return torch.device(device).type == "cuda" if flag is None else bool(flag)


def _graph_break_total() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


class FastPath:
    """Compile a model's step and generation; count what was compiled."""

    def __init__(self, backend: str = "inductor", mode: str = "default", bucket_multiple: int = 8):
        if backend not in BACKENDS:
            raise ConfigError(f"compile backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if mode not in MODES:
            raise ConfigError(f"compile mode must be one of {', '.join(MODES)}, got {mode!r}")
        if isinstance(bucket_multiple, bool) or not isinstance(bucket_multiple, int) or bucket_multiple < 1:
            raise ConfigError(f"bucket multiple must be an integer >= 1, got {bucket_multiple!r}")
        self.backend, self.mode, self.bucket_multiple = backend, mode, bucket_multiple
        self.graphs, self.backend_s = 0, 0.0  # graphs compiled, seconds inside the backend (code generation)
        self.compile_s = 0.0  # seconds compiling in all, where the caller measures it (dept-vl bench does)
        self._breaks_before = _graph_break_total()

    def __deepcopy__(self, memo):  # Hugging Face deep-copies the CompileConfig that holds compile_graph: keep counting here
        return self

    # ---- the backend every graph goes through --------------------------------------------------------------
    def compile_graph(self, graph_module, example_inputs, **_):
        """A dynamo backend: count the graph, then hand it to the chosen backend (inductor with the mode's options)."""
        self.graphs += 1
        start = time.perf_counter()
        try:
            if self.backend == "inductor":
                from torch._inductor import list_mode_options
                from torch._inductor.compile_fx import compile_fx

                return compile_fx(graph_module, example_inputs, config_patches=list_mode_options(self.mode))
            return torch._dynamo.lookup_backend(self.backend)(graph_module, example_inputs)
        finally:
            self.backend_s += time.perf_counter() - start

    @property
    def graph_breaks(self) -> int:
        """Graph breaks dynamo met since this fast path was made (in any compiled code of the process)."""
        return _graph_break_total() - self._breaks_before

    def stats(self) -> dict:
        return {"backend": self.backend, "mode": self.mode, "bucket_multiple": self.bucket_multiple,
                "graphs": self.graphs, "graph_breaks": self.graph_breaks}

    # ---- applying it ---------------------------------------------------------------------------------------
    def apply(self, model, generation: bool = True):
        """Bucket ``model``'s shapes, compile its call in place and (``generation``) its greedy decode step."""
        _allow_one_graph_per_bucket()
        model.fast_path, model.bucket_multiple = self, self.bucket_multiple
        model.compile(backend=self.compile_graph, dynamic=False)
        if generation:
            model.generation_options = {"cache_implementation": "static",
                                        "compile_config": self.generation_config(model.text.device)}
        return model

    def generation_config(self, device):
        """The Hugging Face ``CompileConfig`` of the decode step (on the CPU too, where HF would not compile)."""
        from transformers import CompileConfig

        config = CompileConfig(fullgraph=False, dynamic=False, backend=self.compile_graph, mode=None)
        config._compile_all_devices = torch.device(device).type != "cuda" or None
        return config


def _allow_one_graph_per_bucket(limit: int = 64) -> None:
    """Dynamo gives up on a function (and runs it eagerly) after 8 recompilations; a run of many buckets needs more."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, limit)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4 * limit)


def graph_breaks_in(fn, *args, **kwargs) -> list[dict]:
    """The graph breaks dynamo meets tracing ``fn(*args, **kwargs)``: each one's reason and the frames it was in
    (``file:line``), innermost last. ``torch._dynamo.explain`` does the tracing; nothing is compiled."""
    explained = torch._dynamo.explain(fn)(*args, **kwargs)
    return [{"reason": str(b.reason), "frames": [f"{frame.filename}:{frame.lineno}" for frame in b.user_stack]}
            for b in explained.break_reasons]


def for_inference(model, device: str | None = "auto", compile: bool | None = None, backend: str = "inductor",
                  mode: str = "default", bucket_multiple: int = 8) -> FastPath | None:
    """Put ``model`` on ``device`` (``auto``: CUDA when there is one) and, when ``compile`` says so (default: on
    CUDA), give it the fast path; return that (None when off)."""
    device = resolve_device(device)
    model.to(device)
    if not use_compile(compile, device):
        return None
    fast = FastPath(backend, mode, bucket_multiple)
    fast.apply(model)
    return fast
