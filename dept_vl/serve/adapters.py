"""Many adapters on one frozen backbone: the runs a server answers for, by name, and a mixed batch of their
questions answered with one pass of the backbone.

Every run must sit on the same frozen parts (``VLModel.backbone_identity``: the same hub name, or for local
backbones the same weights, never their paths; two offline-default runs of one task share one; for native VLM runs,
one VLM). The first run's model is loaded; each further run brings only its own trained weights (its method's
module, an assembled model's projection), built on the first one's frozen parts (``VLModel.on_shared_backbone``).
An adapter's method changes only the input sequence, so the questions of a batch go through their own adapters and
the backbone generates for all of them together (``VLModel.generate_mixed``); questions whose generation settings
differ (a caption's, another answer length, sampling) are generated in groups, one per setting.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..fast import resolve_device
from ..inference.predict import Predictor
from ..methods import get_method
from ..models import Member, VLModel
from ..runs.run_dir import SavedModel
from .inputs import Sampling, decoding_key
from .streaming import Sink, streamer_options


@dataclass
class Adapter:
    """One served run: its name, where it was loaded from, and its predictor (its model shares the backbone)."""

    name: str
    source: str
    predictor: Predictor


class AdapterSet:
    """The adapters a server answers for; thread-safe to add to and remove from while it answers."""

    def __init__(self, device: str = "cpu", backbone: str | None = None, num_beams: int = 1):
        self.device, self.backbone, self.num_beams = resolve_device(device), backbone, num_beams
        self.adapters: dict[str, Adapter] = {}
        self.shared: VLModel | None = None  # the first run's model: its frozen parts
        self.identity: dict | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, predictor: Predictor, name: str | None = None) -> "AdapterSet":
        """One adapter: a predictor already loaded (named ``name``, default its task's name)."""
        adapters = cls(str(predictor.model.text.device), num_beams=predictor.num_beams)
        adapters.shared, adapters.identity = predictor.model, predictor.model.backbone_identity()
        name = name or predictor.task.name
        adapters.adapters = {name: Adapter(name, "", predictor)}
        return adapters

    def add(self, name: str, source: str) -> Adapter:
        """Load run ``source`` as adapter ``name`` onto the shared backbone (the first one brings it)."""
        saved = SavedModel.find(source)
        with self._lock:
            if name in self.adapters:
                raise ConfigError(f"adapter {name!r} is served already (from {self.adapters[name].source})")
        if self.shared is None:
            predictor = Predictor(source, None, self.num_beams, self.backbone, str(self.device), compile=False)
            self.shared, self.identity = predictor.model, predictor.model.backbone_identity()
        else:
            predictor = self._on_shared_backbone(saved, source)
        adapter = Adapter(name, str(source), predictor)
        with self._lock:
            self.adapters = {**self.adapters, name: adapter}
        return adapter

    def _on_shared_backbone(self, saved: SavedModel, source: str) -> Predictor:
        """``saved``'s trained weights on the shared frozen parts, after checking they are its own (and that both
        its method and the served one change only the input sequence: not LoRA, not full fine-tuning)."""
        config = saved.load_config().with_backbone(self.backbone)
        first = next(iter(self.adapters.values()))
        _check_method(config.method, source)
        _check_method(self.shared.config.method, first.source)
        theirs = self.shared.backbone_identity(config)
        if theirs != self.identity:
            raise ConfigError(f"{source} sits on another backbone than {first.source}: "
                              f"{_differs(theirs, self.identity)}; serve runs of one frozen backbone together")
        model = self.shared.on_shared_backbone(config)
        model.load_trainable(saved.directory)
        return Predictor.from_model(model.to(self.device), saved.get_task(), self.num_beams)

    def remove(self, name: str) -> Adapter:
        """Stop serving ``name`` (questions already in a batch finish on it)."""
        with self._lock:
            if name not in self.adapters:
                raise KeyError(name)
            adapters = dict(self.adapters)
            removed = adapters.pop(name)
            if not adapters:
                raise ConfigError(f"{name!r} is the last adapter; a server keeps at least one")
            self.adapters = adapters
        return removed

    def get(self, name: str | None) -> Adapter:
        """The adapter ``name`` (None: the only one, or the first added)."""
        adapters = self.adapters
        if name is None:
            return next(iter(adapters.values()))
        if name not in adapters:
            raise KeyError(name)
        return adapters[name]


def _check_method(method: str, source: str) -> None:
    if get_method(method).adapter is None:
        raise ConfigError(f"{source}: method {method!r} changes the backbone itself, so its questions cannot share "
                          "the backbone's pass with other adapters; serve it alone (--checkpoint)")


def _differs(a: dict, b: dict) -> str:
    key = next(k for k in a if a[k] != b.get(k))
    return f"its {key} is {a[key]}, the served one's {b.get(key)}"


# ---- a mixed batch --------------------------------------------------------------------------------------------
@dataclass
class Part:
    """The questions of one adapter in a batch: where in the batch, its checked requests ((text, images) each),
    their earlier turns, the answer length, the sampling (None: greedy) and each question's stream, if any."""

    index: list[int]
    requests: list[tuple[str, list]]
    contexts: list
    max_new_tokens: int | None
    adapter: Adapter
    sampling: Sampling | None = None
    sinks: list[Sink | None] | None = None


@torch.no_grad()
def generate_parts(shared, parts: list[Part], num_beams: int) -> dict[int, str]:
    """One pass of the shared model per group of parts that generate alike (answer length, the task's settings,
    sampling; a seeded part alone): ``VLModel.generate_mixed``."""
    groups: dict[tuple, list[Part]] = {}
    for part in parts:
        settings = tuple(sorted(part.adapter.predictor.task.generation.items()))
        length = part.max_new_tokens or part.adapter.predictor.model.config.text.max_target_length
        groups.setdefault((length, settings, *decoding_key(part.sampling, id(part))), []).append(part)
    answers = {}
    for (max_new_tokens, settings, sampling, _), group in groups.items():
        members = [Member(p.adapter.predictor.model, [t for t, _ in p.requests], [i for _, i in p.requests],
                          p.contexts, p.adapter.predictor.task.name) for p in group]
        sinks = [sink for p in group for sink in (p.sinks or [None] * len(p.index))]
        options = decode_options({"num_beams": num_beams, **dict(settings)}, sampling, shared.text.tokenizer, sinks,
                                 num_beams)
        with seeded(sampling, shared.text.device):
            texts = shared.generate_mixed(members, max_new_tokens=max_new_tokens, **options)
        for i, text in zip([i for p in group for i in p.index], texts):
            answers[i] = text
    return answers


def decode_options(base: dict, sampling: Sampling | None, tokenizer, sinks: list[Sink | None],
                   num_beams: int) -> dict:
    """``generate``'s options for a group that decodes alike: ``base`` with ``sampling``'s over it, and a streamer
    where a row asks to be streamed (``num_beams``: the beams where neither sets them)."""
    options = {**base, **(sampling.options() if sampling else {})}
    return {**options, **streamer_options(tokenizer, sinks, options.get("num_beams", num_beams))}


@contextlib.contextmanager
def seeded(sampling: Sampling | None, device):
    """The block's random draws seeded by ``sampling.seed`` (if any), the process's random state unchanged after."""
    if sampling is None or sampling.seed is None:
        yield
        return
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(sampling.seed)
        yield
