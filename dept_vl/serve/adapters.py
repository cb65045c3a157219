"""Many adapters on one frozen backbone: the runs a server answers for, by name, and a mixed batch of their
questions answered with one pass of the backbone.

Every run must sit on the same frozen text backbone and vision encoder: the same hub name, or, for local
backbones, the same weights (a checksum of their files, never their paths; two offline-default runs of one task
share one). The first run's backbone and encoder are loaded; each further run brings only its own trained weights
(its method's module and its projection), on top of them. An adapter's method changes only the input sequence (its
prompt P, the rows of its A @ B, computed once as a table, its projection), so the questions of a batch go through
their own adapters, are padded to one length, and the backbone generates for all of them together; questions whose
generation settings differ (a caption's, another answer length) are generated in groups, one per setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..fast import resolve_device
from ..inference.predict import Predictor
from ..methods import get_method
from ..models import VisionLanguageModel, create_vision_encoder
from ..models.names import FEATURES, parse_model_name
from ..runs.run_dir import SavedModel
from .inputs import Sampling, decoding_key
from .streaming import Sink, streamer_options

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf", "tokenizer.json", "*.model", "vocab.json")


@dataclass
class Adapter:
    """One served run: its name, where it was loaded from, and its predictor (its model shares the backbone)."""

    name: str
    source: str
    predictor: Predictor


def fingerprint(name: str, role: str) -> str:
    """What identifies a backbone: a hub name by its name; a local directory (or file) by a checksum of its weight
    and tokenizer files."""
    parsed = parse_model_name(name, role=role)
    path = Path(parsed.ref if parsed.kind in ("hf", "gguf") else name)
    if not path.exists():
        return f"{parsed.kind}:{name}"
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for pattern in WEIGHT_FILES for p in path.glob(pattern))
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"weights:{digest.hexdigest()[:16]}"


def backbone_identity(model) -> dict:
    """The frozen parts a run needs, by what they are: its text backbone and its vision encoder."""
    config = model.config
    if config.vlm is not None:
        raise ConfigError("several adapters on one server take assembled models; a native VLM run is served alone")
    vision = model.vision.identity() if model.vision is not None else {"encoder": FEATURES}
    return {"text": fingerprint(config.text.backbone, "text backbone"), "vision": vision,
            "dtype": config.text.dtype}


class AdapterSet:
    """The adapters a server answers for; thread-safe to add to and remove from while it answers."""

    def __init__(self, device: str = "cpu", backbone: str | None = None, num_beams: int = 1):
        self.device, self.backbone, self.num_beams = resolve_device(device), backbone, num_beams
        self.adapters: dict[str, Adapter] = {}
        self.shared: VisionLanguageModel | None = None  # the first run's model: its backbone and encoder
        self.identity: dict | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, predictor: Predictor, name: str | None = None) -> "AdapterSet":
        """One adapter: a predictor already loaded (named ``name``, default its task's name)."""
        adapters = cls(str(predictor.model.text.device), num_beams=predictor.num_beams)
        adapters.shared, adapters.identity = predictor.model, adapters._identity_of(predictor.model)
        name = name or predictor.task.name
        adapters.adapters = {name: Adapter(name, "", predictor)}
        return adapters

    def add(self, name: str, source: str) -> Adapter:
        """Load run ``source`` as adapter ``name`` onto the shared backbone (the first one brings it)."""
        saved = SavedModel.find(source)
        if saved.load_config().vlm is not None and (self.adapters or self.shared is not None):
            raise ConfigError(f"{source}: a native VLM run is served alone, not beside other adapters")
        if (self.identity or {}).get("vlm") is not None:
            raise ConfigError(f"{source}: this server serves a native VLM run, which is served alone; serve this run "
                              "on a server of its own")
        with self._lock:
            if name in self.adapters:
                raise ConfigError(f"adapter {name!r} is served already (from {self.adapters[name].source})")
        if self.shared is None:
            predictor = Predictor(source, None, self.num_beams, self.backbone, str(self.device), compile=False)
            self.shared, self.identity = predictor.model, self._identity_of(predictor.model)
        else:  # only methods that change the input sequence share the backbone's pass (not LoRA, not full)
            first = next(iter(self.adapters.values()))
            _check_method(saved.load_config().method, source)
            _check_method(self.shared.config.method, first.source)
            predictor = self._on_shared_backbone(saved, source)
        adapter = Adapter(name, str(source), predictor)
        with self._lock:
            self.adapters = {**self.adapters, name: adapter}
        return adapter

    def _identity_of(self, model) -> dict:
        return backbone_identity(model) if model.config.vlm is None else {"vlm": model.config.vlm}

    def _on_shared_backbone(self, saved: SavedModel, source: str) -> Predictor:
        """``saved``'s trained weights on the shared backbone and encoder, after checking they are its own."""
        config = saved.load_config()
        vision = None if config.vision.encoder == FEATURES else create_vision_encoder(config.vision)
        theirs = {"text": fingerprint(config.text.backbone if self.backbone is None else self.backbone,
                                      "text backbone"),
                  "vision": vision.identity() if vision is not None else {"encoder": FEATURES},
                  "dtype": config.text.dtype}
        if theirs != self.identity:
            first = next(iter(self.adapters.values()))
            raise ConfigError(f"{source} sits on another backbone than {first.source}: {_differs(theirs, self.identity)}"
                              "; serve runs of one frozen backbone and vision encoder together")
        model = VisionLanguageModel(config, vision=self.shared.vision, text=self.shared.text)
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
    """The questions of one adapter in a batch, as its model's input sequences."""

    index: list[int]  # where in the batch
    embeds: torch.Tensor
    mask: torch.Tensor
    max_new_tokens: int
    adapter: Adapter
    sampling: Sampling | None = None  # None: greedy
    sinks: list[Sink | None] | None = None  # each question's stream, if it asked for one


@torch.no_grad()
def encode_images(shared, requests: list[tuple[str, list]]) -> list[torch.Tensor | None]:
    """Each request's images through the shared frozen vision encoder, all of a batch's in one pass (adapters
    differ after it): a (images, tokens, dim) tensor per request; None each for a model without an encoder."""
    if shared.vision is None or not requests:
        return [None] * len(requests)
    images = [image for _, request_images in requests for image in request_images]
    features = shared.vision(shared.vision.preprocess(images).to(shared.text.device))
    return list(features.split([len(request_images) for _, request_images in requests]))


def encode(adapter: Adapter, requests: list[tuple[str, list]], max_new_tokens: int | None,
           features: list[torch.Tensor | None] | None = None) -> tuple:
    """The input sequences of an adapter's questions: its prompt, its rows of A @ B, its projection, its task's
    text (its model's one place of assembly). ``features``: their images already encoded (``encode_images``)."""
    model, task = adapter.predictor.model, adapter.predictor.task
    texts, images = zip(*requests)
    if features is not None and features[0] is not None:
        batch = model.prepare(list(texts), image_features=torch.stack(features), task=task.name)
    else:
        batch = model.prepare(list(texts), list(images), task=task.name)
    keys = ("input_ids", "attention_mask", "pixel_values", "image_features", "prompt_ids")
    embeds, mask = model.encoder_inputs(**{k: batch[k] for k in keys if k in batch})
    return embeds, mask, max_new_tokens or model.config.text.max_target_length


def pad_to(embeds: torch.Tensor, mask: torch.Tensor, length: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences padded to ``length`` (on the left for a decoder-only backbone, whose inputs are left-aligned)."""
    extra = length - embeds.shape[1]
    if extra == 0:
        return embeds, mask
    pads = (embeds.new_zeros(embeds.shape[0], extra, embeds.shape[2]), mask.new_zeros(mask.shape[0], extra))
    if left:
        return torch.cat([pads[0], embeds], 1), torch.cat([pads[1], mask], 1)
    return torch.cat([embeds, pads[0]], 1), torch.cat([mask, pads[1]], 1)


@torch.no_grad()
def generate_parts(shared, parts: list[Part], num_beams: int) -> dict[int, str]:
    """One backbone pass per group of parts that generate alike (answer length, the task's settings, sampling; a
    seeded part alone)."""
    groups: dict[tuple, list[Part]] = {}
    for part in parts:
        settings = tuple(sorted(part.adapter.predictor.task.generation.items()))
        groups.setdefault((part.max_new_tokens, settings, *decoding_key(part.sampling, id(part))), []).append(part)
    answers, left = {}, shared.text.kind == "causal"
    for (max_new_tokens, settings, sampling, _), group in groups.items():
        length = max(p.embeds.shape[1] for p in group)
        padded = [pad_to(p.embeds, p.mask, length, left) for p in group]
        sinks = [sink for p in group for sink in (p.sinks or [None] * len(p.index))]
        options = decode_options({"num_beams": num_beams, **dict(settings)}, sampling, shared.text.tokenizer, sinks,
                                 num_beams)
        with seeded(sampling, shared.text.device):
            ids = shared.text.generate(torch.cat([e for e, _ in padded]), torch.cat([m for _, m in padded]),
                                       max_new_tokens=max_new_tokens, **options)
        texts = shared.text.decode(ids)
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
