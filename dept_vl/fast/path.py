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

import torch

from .._dataclass import check_choice, check_int
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
        self.backend = check_choice("compile backend", backend, BACKENDS)
        self.mode = check_choice("compile mode", mode, MODES)
        self.bucket_multiple = check_int("bucket multiple", bucket_multiple, 1)
        self.graphs = 0  # graphs handed to the backend
        self.compile_s = 0.0  # seconds compiling in all, where the caller measures it (dept-vl bench does)
        self._breaks_before = _graph_break_total()

    def __deepcopy__(self, memo):  # HF deep-copies the CompileConfig holding compile_graph: keep counting here
        return self

    # ---- the backend every graph goes through --------------------------------------------------------------
    def compile_graph(self, graph_module, example_inputs, **_):
        """A dynamo backend: count the graph, then hand it to the chosen backend (inductor with the mode's options)."""
        self.graphs += 1
        if self.backend == "inductor":
            from torch._inductor import list_mode_options
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(graph_module, example_inputs, config_patches=list_mode_options(self.mode))
        return torch._dynamo.lookup_backend(self.backend)(graph_module, example_inputs)

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


def enable(model, compile: bool | None, device, backend: str = "inductor", mode: str = "default",
           bucket_multiple: int = 8) -> FastPath | None:
    """Give ``model`` the fast path when ``compile`` says so (None: on CUDA); return it (None when off)."""
    if not use_compile(compile, device):
        return None
    return FastPath(backend, mode, bucket_multiple).apply(model).fast_path


def for_inference(model, device: str | None = "auto", compile: bool | None = None, **settings) -> FastPath | None:
    """Put ``model`` on ``device`` (``auto``: CUDA when there is one), then ``enable`` the fast path (``settings``:
    backend, mode, bucket_multiple)."""
    device = resolve_device(device)
    model.to(device)
    return enable(model, compile, device, **settings)
