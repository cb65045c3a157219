"""An input method (DePT, pt, ADePT) inside a native Hugging Face VLM: on its language model's input sequence *after*
the image features have replaced their placeholders.

Native VLMs find their image placeholders by comparing ``input_ids`` (or ``inputs_embeds``) with the image token,
build positions from ``input_ids`` (Qwen2-VL's M-RoPE) and need ``token_type_ids`` / ``mm_token_type_ids`` aligned
with the sequence. Anything added to the embeddings before the merge, or a prompt prepended without extending
those, breaks them. So the wrapper does neither:

1. it inserts l placeholder tokens (ordinary text) before each row's first real token, and extends the mask (1),
   ``labels`` (-100), ``token_type_ids`` (prefix, 0) and ``mm_token_type_ids`` (text, 0) to match: the model's own
   merge, positions and masks then work on the longer sequence as on any text;
2. a pre-hook on the module that receives the merged sequence (the language model; an encoder-decoder's encoder)
   puts P in those slots and the method's update on the real tokens: ``[P ; X + scaling * (A @ B)[:n]]``, row i of A
   meeting the i-th real token of the joint sequence (image features included), whatever the padding.

Under ``generate`` the first call of that module is the whole prompt; each later call (the KV cache's decoding
steps) carries the next token of every row, which gets the next row of A, as in a teacher-forced pass, so greedy
generation equals the teacher-forced argmax. An encoder-decoder's generated tokens are the decoder's: untouched.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .native_compile import (COMPILE_SETTINGS, features_first, install_output_capturing, positions_first,
                             under_settings)
from .prompt import SoftPrompt, position_ids_from_mask


def _grid(config) -> int | None:
    """Patches per image of the VLM's vision tower (its image size over its patch size, squared), None if unknown."""
    vision = getattr(config, "vision_config", None)
    size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
    return (size // patch) ** 2 if isinstance(size, int) and isinstance(patch, int) else None


def _llava_tokens(config) -> int | None:
    grid = _grid(config)
    return None if grid is None else grid + (getattr(config, "vision_feature_select_strategy", "default") == "full")


@dataclass(frozen=True)
class NativeFamily:
    """Everything dept-vl knows about one family of native VLMs, in one record: its ``model_type``s; the per-token
    inputs besides ``input_ids``, ``attention_mask`` and ``labels`` that the prompt's slots must extend (with the
    value for prefix text); its trainable bridge from the vision tower to the language model (module names ending so,
    for ``--train-projector``); the image placeholders its processor writes per image (per tile for Idefics3 /
    SmolVLM) from its config, or None where that depends on the image; and whether its processor puts them in front of
    the text itself (``images_by_processor``: none written in the prompt). A new family is one record here (plus the
    tiny config its tests build, ``tests/tiny_vlms.py``)."""

    name: str
    model_types: tuple[str, ...]
    slot_values: dict[str, int] = field(default_factory=dict)
    projectors: tuple[str, ...] = ("multi_modal_projector",)
    image_tokens: Callable[[object], int | None] = lambda config: None
    images_by_processor: bool = False


FAMILIES = (
    NativeFamily("LLaVA", ("llava", "llava_next", "llava_onevision", "vipllava"),
                 image_tokens=lambda c: _llava_tokens(c) if c.model_type in ("llava", "vipllava") else None),
    NativeFamily("Qwen2-VL", ("qwen2_vl", "qwen2_5_vl"), {"mm_token_type_ids": 0}, projectors=("visual.merger",)),
    NativeFamily("PaliGemma", ("paligemma",), {"token_type_ids": 0}, image_tokens=_grid),
    NativeFamily("Idefics3 / SmolVLM", ("idefics3", "smolvlm"), projectors=("connector",),
                 image_tokens=lambda c: None if _grid(c) is None else _grid(c) // c.scale_factor ** 2),
    NativeFamily("Florence-2", ("florence2",), projectors=("image_projection", "image_proj_norm"),
                 images_by_processor=True),
    NativeFamily("BLIP-2", ("blip-2",), projectors=("language_projection",),
                 image_tokens=lambda c: c.num_query_tokens, images_by_processor=True),
)
MULTIMODAL_IDS = ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id",
                  "vision_end_token_id", "boi_token_id", "eoi_token_id", "fake_image_token_id")


def native_family(model: nn.Module) -> NativeFamily | None:
    """The family of a native VLM, None for a text model; a ConfigError for a VLM no family covers."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    found = next((f for f in FAMILIES if model_type in f.model_types), None)
    if found is None and hasattr(config, "vision_config"):
        raise ConfigError(f"{type(model).__name__} ({model_type!r}) is a vision-language model dept-vl does not "
                          f"know how to adapt; supported: {', '.join(f.name for f in FAMILIES)}")
    return found


def unfreeze_projector(vlm: nn.Module) -> list[str]:
    """Make ``vlm``'s own projector (its family's ``projectors``: the bridge from its vision tower to its language
    model) trainable; the names of the modules unfrozen (none: the VLM has no such module)."""
    found = [name for name, _ in vlm.named_modules() if name.endswith(native_family(vlm).projectors)]
    for name in found:
        vlm.get_submodule(name).requires_grad_(True)
    return found


def language_model(model: nn.Module) -> nn.Module:
    """The language model inside a native VLM (decoder-only, or an encoder-decoder)."""
    inner = getattr(model, "model", model)
    lm = next((m for m in (getattr(inner, "language_model", None), getattr(inner, "text_model", None),
                           getattr(model, "language_model", None)) if isinstance(m, nn.Module)), None)
    if lm is None:
        raise ConfigError(f"cannot find the language model inside {type(model).__name__}")
    return lm


def language_input(model: nn.Module) -> tuple[nn.Module, bool]:
    """(the module that receives the merged input sequence, whether it is an encoder-decoder's encoder)."""
    lm = language_model(model)
    if getattr(lm.config, "is_encoder_decoder", False):
        return lm.get_encoder(), True
    return lm, False


def placeholder_id(model: nn.Module) -> int:
    """A text token for the prompt's slots (its embedding is replaced by P): the pad, BOS or EOS token, or 0, never a
    multimodal token."""
    config, text = model.config, model.config.get_text_config()
    special = {getattr(c, k, None) for c in (config, text) for k in MULTIMODAL_IDS}
    candidates = [getattr(c, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id") for c in (text, config)]
    return next(int(i) for i in [*candidates, 0, 1, 2] if isinstance(i, int) and i not in special)


def insert_slots(x: torch.Tensor, mask: torch.Tensor, count: int, value) -> torch.Tensor:
    """``x`` (batch, n, ...) with ``count`` columns of ``value`` before each row's first real token (mask 1)."""
    batch, n = mask.shape
    first = (mask.long().cumsum(1) == 0).sum(1, keepdim=True)  # leading pads of each row
    column = torch.arange(n + count, device=mask.device).unsqueeze(0).expand(batch, -1)
    slot = (column >= first) & (column < first + count)
    source = torch.where(column < first, column, column - count).clamp(0, n - 1)
    index = source.view(batch, n + count, *([1] * (x.dim() - 2))).expand(batch, n + count, *x.shape[2:])
    out = x.gather(1, index)
    fill = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return torch.where(slot.view(batch, n + count, *([1] * (x.dim() - 2))), fill, out)


def remove_slots(ids: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
    """The inverse of ``insert_slots`` on generated sequences (``mask``: the prompt's mask, before or after the
    slots went in: its leading pads are the same)."""
    batch, n = ids.shape
    first = (mask.long().cumsum(1) == 0).sum(1, keepdim=True)
    column = torch.arange(n - count, device=ids.device).unsqueeze(0).expand(batch, -1)
    return ids.gather(1, torch.where(column < first, column, column + count))


class Call:
    """The positions of the tokens the hooked module sees during one forward or generate call: the (extended)
    prompt first, in one or more pieces, then one new token per row per decoding step."""

    def __init__(self, mask: torch.Tensor, prompt_ids=None):
        self.mask, self.prompt_ids = mask, prompt_ids
        self.positions = position_ids_from_mask(mask)
        self.consumed = 0
        self.counts = mask.long().sum(1)

    def take(self, n: int, batch: int):
        """(positions, real, prompt_ids) of the next ``n`` tokens of ``batch`` rows (a multiple of the prompt's rows
        under beam search or several sequences per prompt)."""
        repeat = batch // self.mask.shape[0]
        if self.consumed < self.mask.shape[1]:
            part = slice(self.consumed, self.consumed + n)
            positions, real = self.positions[:, part], self.mask[:, part]
            self.consumed += n
        else:  # decoding: the next token of every row
            positions = self.counts.unsqueeze(1) + torch.arange(n, device=self.mask.device)
            real = torch.ones_like(positions)
            self.counts = self.counts + n
        prompt_ids = self.prompt_ids
        if repeat > 1:
            positions, real = positions.repeat_interleave(repeat, 0), real.repeat_interleave(repeat, 0)
            if isinstance(prompt_ids, torch.Tensor):
                prompt_ids = prompt_ids.repeat_interleave(repeat, 0)
        return positions, real, prompt_ids


class StackedMethods(nn.Module):
    """Several runs' input methods over one batch, each row through its own (``rows``: the method of each row): a
    mixed batch of the runs served on one VLM goes through it in one pass. The sequence holds slots for the longest
    prompt; a row of a shorter one leaves the first of them out (masked, as more left padding: ``unused_slots``)."""

    def __init__(self, methods: list[SoftPrompt], rows: torch.Tensor):
        super().__init__()
        self.methods, self.rows = tuple(methods), rows  # a tuple: held, not registered as this module's own
        self.prompt_length = max(m.prompt_length for m in methods)
        self.config = next(m.config for m in methods if m.prompt_length == self.prompt_length)

    def unused_slots(self) -> torch.Tensor:
        """Per row, how many of the ``prompt_length`` slots its own method's prompt leaves unused."""
        return self.prompt_length - torch.tensor([m.prompt_length for m in self.methods], device=self.rows.device)[
            self.rows]

    def fill(self, inputs_embeds, positions, real, prompt_ids=None) -> torch.Tensor:
        rows = self.rows.repeat_interleave(inputs_embeds.shape[0] // self.rows.shape[0])  # beams, samples
        out = inputs_embeds.clone()
        for k, method in enumerate(self.methods):
            chosen = rows == k
            if chosen.any():
                out[chosen] = method.fill(inputs_embeds[chosen], positions[chosen], real[chosen])
        return out


class NativeVLMWrapper(nn.Module):
    """``model`` (a native VLM, frozen) called as it is, with the input method ``dept`` on its merged sequence.

    ``wrapped(**processor_outputs, labels=...)`` and ``wrapped.generate(**processor_outputs, ...)`` take exactly what
    the bare model takes; ``generate`` returns what the bare model would (the prompt's ids, then the new tokens).
    """

    backbone_prefix = "model."  # its parameters under this name are the frozen VLM's

    def __init__(self, model: nn.Module, dept: SoftPrompt | None, family: NativeFamily, method: str = "dept"):
        super().__init__()
        self.model, self.dept, self.family, self.method_name = model, dept, family, method
        self.target, self.encoder_decoder = language_input(model)
        self.slot_id = placeholder_id(model)
        self._call: Call | None = None
        self._warned_length = False
        if dept is not None:  # None: a method that changed the backbone instead (LoRA): the model as it is
            self.target.register_forward_pre_hook(self._fill, with_kwargs=True)

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_decoder

    # ---- the input, extended by the prompt's slots ---------------------------------------------------------
    def extend(self, input_ids, attention_mask=None, labels=None, inputs: dict | None = None):
        """(input_ids, attention_mask, labels, other inputs), each per-token tensor with the prompt's slots."""
        if input_ids is None:
            raise InputError(f"{self.family.name} models need input_ids (their image placeholders are found in them)")
        if self.dept is None:
            return input_ids, attention_mask, labels, dict(inputs or {})
        inputs, l = dict(inputs or {}), self.dept.prompt_length
        if "position_ids" in inputs or "inputs_embeds" in inputs:
            raise InputError("leave position_ids and inputs_embeds out: the model computes them from input_ids")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if not self._warned_length and not torch.compiler.is_compiling():  # said eagerly: no graph break for it
            self._warn_length(mask)
        for key, value in self.family.slot_values.items():
            if inputs.get(key) is not None:
                inputs[key] = insert_slots(inputs[key], mask, l, value)
        aligned = [k for k, v in inputs.items() if k not in self.family.slot_values and isinstance(v, torch.Tensor)
                   and v.dim() == 2 and v.shape == input_ids.shape and k != "decoder_input_ids"]
        if aligned:
            raise InputError(f"{aligned[0]} is aligned with input_ids, and dept-vl does not know how to extend it "
                             f"for the prompt of {self.family.name}")
        if labels is not None and not self.encoder_decoder:
            labels = insert_slots(labels.contiguous(), mask, l, -100)
        return (insert_slots(input_ids, mask, l, self.slot_id), self._slot_mask(mask, l), labels, inputs)

    def _slot_mask(self, mask: torch.Tensor, l: int) -> torch.Tensor:
        """The attention mask with the ``l`` slots in; under StackedMethods, a row of a shorter prompt has its first
        unused slots masked, right after its left padding (so its real tokens are where they would be alone)."""
        extended = insert_slots(mask, mask, l, 1)
        if not isinstance(self.dept, StackedMethods):
            return extended
        first = (mask.long().cumsum(1) == 0).sum(1, keepdim=True)
        column = torch.arange(extended.shape[1], device=mask.device).unsqueeze(0)
        unused = self.dept.unused_slots().to(mask.device).unsqueeze(1)
        return extended * ((column < first) | (column >= first + unused)).to(extended.dtype)

    def _warn_length(self, mask: torch.Tensor) -> None:
        """Once: an input longer than max_length (its tokens past it get no update)."""
        real, s = int(mask.long().sum(1).max()), self.dept.config.max_length
        if real > s:
            self._warned_length = True
            warnings.warn(f"input length {real} (image tokens and text) exceeds DePT max_length {s}: tokens past "
                          f"position {s} get no update (said once; raise max_length to cover them)", stacklevel=4)

    @contextlib.contextmanager
    def calling(self, mask: torch.Tensor | None, prompt_ids=None):
        """The hook fills the merged sequence while the block runs (one forward or generate call)."""
        self._call = None if self.dept is None else Call(mask, prompt_ids)
        try:
            yield
        finally:
            self._call = None

    @contextlib.contextmanager
    def using(self, method: nn.Module):
        """The block's calls fill the merged sequence with ``method`` (of this wrapper's prompt length) instead."""
        own = self.dept
        self.dept = method
        try:
            yield
        finally:
            self.dept = own

    def _fill(self, module, args, kwargs):
        call = self._call
        if call is None:  # the model called by itself, not through the wrapper
            return None
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:  # a decoding step fed by ids (e.g. BLIP-2's language model generating)
            ids = kwargs.get("input_ids")
            if ids is None or args:
                raise InputError(f"{type(module).__name__} was called without inputs_embeds or input_ids")
            embeds, kwargs["input_ids"] = module.get_input_embeddings()(ids), None
        positions, real, prompt_ids = call.take(embeds.shape[1], embeds.shape[0])
        kwargs["inputs_embeds"] = self.dept.fill(embeds, positions.to(embeds.device), real.to(embeds.device),
                                                 prompt_ids)
        return args, kwargs

    # ---- the calls --------------------------------------------------------------------------------------------
    def compile(self, *args, **kwargs) -> None:
        """``nn.Module.compile``, traced without graph breaks where the family allows (``methods.native_compile``):
        transformers' output-capturing hooks installed first, the compiled call under ``COMPILE_SETTINGS``, cached
        image features and Qwen2-VL's M-RoPE positions computed before it."""
        install_output_capturing(self.model)
        super().compile(*args, **kwargs)
        compiled = under_settings(self._compiled_call_impl, COMPILE_SETTINGS)
        self._compiled_call_impl = features_first(self.model, positions_first(self.model, self.extend, compiled))

    def forward(self, input_ids=None, attention_mask=None, labels=None, prompt_ids=None, slot_position_ids=None,
                **inputs):
        """The model's output on the inputs with the prompt's slots in (``slot_position_ids``: the model's
        ``position_ids`` for that longer sequence, computed before a compiled call: ``positions_first``)."""
        ids, mask, labels, inputs = self.extend(input_ids, attention_mask, labels, inputs)
        if slot_position_ids is not None:
            inputs["position_ids"] = slot_position_ids
        with self.calling(mask, prompt_ids):
            return self.model(input_ids=ids, attention_mask=mask, labels=labels, **inputs)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, prompt_ids=None, **inputs):
        given = torch.ones_like(input_ids) if attention_mask is None and input_ids is not None else attention_mask
        ids, mask, _, inputs = self.extend(input_ids, attention_mask, None, inputs)
        with self.calling(mask, prompt_ids):
            out = self.model.generate(input_ids=ids, attention_mask=mask, **inputs)
        if self.encoder_decoder or self.dept is None:
            return out
        if isinstance(out, torch.Tensor):
            return remove_slots(out, given, self.dept.prompt_length)
        out.sequences = remove_slots(out.sequences, given, self.dept.prompt_length)
        return out
