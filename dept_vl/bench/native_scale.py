"""``dept-vl bench --vlm ... --cache-features / --gradient-checkpointing``: DePT's training step on a native VLM with
its image features read from a warm feature cache, and with its language model checkpointed, each paired against
the plain DePT step (time ratio, the two taking turns) with its peak memory beside. With ``--train-projector`` the
VLM's projector trains in every step, and the cache holds the tower's output before it.

``llava-clip-s-shape`` is the vision-heavy shape of the done-when test: a LLaVA with a CLIP-S-sized tower (12 layers,
384 wide, 224 px, patches of 16: 196 visual tokens) and a small Llama (2 layers, 256 wide, 2,000 words); random weights.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from ..data.feature_cache import FeatureCache
from ..errors import ConfigError
from ..models.checkpointing import enable_gradient_checkpointing
from ..methods.native import language_model, native_family
from ..models.native_features import cache_image_features, projector_module, vlm_signature
from .timing import PeakMemory, TrainStep, median_time, paired_ratio

LLAVA_SHAPES = {"llava-clip-s-shape": (dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12,
                                            num_attention_heads=6, image_size=224, patch_size=16),
                                       dict(vocab_size=2000, hidden_size=256, intermediate_size=1024,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                            max_position_embeddings=2048))}


def build_llava_shape(name: str, directory: Path) -> str:
    """A LLAVA_SHAPES name saved (random weights) to ``directory``."""
    if not (directory / "config.json").is_file():
        import transformers as T

        vision, text = LLAVA_SHAPES[name]
        config = T.LlavaConfig(vision_config=T.CLIPVisionConfig(**vision),
                               text_config=T.LlamaConfig(**text, pad_token_id=0, bos_token_id=1, eos_token_id=2),
                               image_token_id=text["vocab_size"] - 1)
        torch.manual_seed(0)
        T.LlavaForConditionalGeneration(config).save_pretrained(directory)
    return str(directory)


class LanguageModelOnly(torch.nn.Module):
    """A wrapped native VLM as ``enable_gradient_checkpointing`` sees a model (its ``frozen_language_model``)."""

    def __init__(self, wrapped):
        super().__init__()
        self.native = wrapped

    @property
    def frozen_language_model(self):
        return language_model(self.native.model)


def saved_for_backward_mb(model, batch: dict) -> float:
    """MB of the tensors one forward of ``model`` keeps for its backward pass (each storage once; what a
    checkpointed layer recomputes is not kept): the activation memory, exact on any device."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**batch).loss.backward()
    return sum(storages.values()) / 2**20


def variant(cfg, name: str, wrapped, batch: dict, base: TrainStep, log) -> dict:
    """The row of DePT with ``name`` on (cached features / gradient checkpointing), and its paired ratio to
    ``base`` (plain DePT's step)."""
    log(f"bench dept with {name} ...")
    wrapped = copy.deepcopy(wrapped)
    if name == "cached features":
        projector = projector_module(wrapped.model, native_family(wrapped.model).projectors) \
            if cfg.train_projector else None  # trained: the tower's output before it is cached
        if cfg.train_projector and projector is None:
            raise ConfigError(f"--cache-features with --train-projector: {cfg.vlm}'s projector input does not "
                              "split per image (not cached)")
        store = FeatureCache(Path(tempfile.mkdtemp(prefix="dept-vl-bench-")),
                             vlm_signature(wrapped.model, "bench", projector))
        hook = cache_image_features(wrapped.model, store, projector)
    else:
        enable_gradient_checkpointing(LanguageModelOnly(wrapped))
    step = TrainStep(wrapped, batch, cfg.device)
    with PeakMemory(torch.device(cfg.device)) as memory:
        for _ in range(cfg.warmup + 1):  # the first step fills the cache
            step()
    row = {"method": f"dept+{name.replace(' ', '-')}", "train_step_s": median_time(step, cfg.steps, 0),
           "peak_mem_mb": memory.mb, "mem_kind": memory.kind}
    if name == "cached features":
        row.update(cache_hits=hook.hits, cache_misses=hook.misses)
    row.update(saved_for_backward_mb=saved_for_backward_mb(wrapped, batch),
               dept_saved_for_backward_mb=saved_for_backward_mb(base.model, batch))
    ratio = paired_ratio(step, base, cfg.paired or 3, 0)
    return row, {"a": row["method"], "b": "dept", **{f"step_ratio_{k}": v for k, v in ratio.items()}}


def scale_variants(cfg, wrapped, batch: dict, base: TrainStep, log) -> tuple[list[dict], list[dict]]:
    """Rows and paired ratios of the variants ``cfg`` asks for."""
    rows, pairs = [], []
    for name, wanted in (("cached features", cfg.cache_features), ("gradient checkpointing",
                                                                   cfg.gradient_checkpointing)):
        if wanted:
            row, pair = variant(cfg, name, wrapped, batch, base, log)
            rows.append(row)
            pairs.append(pair)
    return rows, pairs
