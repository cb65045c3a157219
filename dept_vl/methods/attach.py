"""Plug DePT (or any input method: pt, adept) into any model that accepts ``inputs_embeds`` (Hugging Face style),
in one call.

    wrapped = attach_dept(model, DePTConfig(prompt_length=20, r=8, max_length=128))
    out = wrapped(input_ids=ids, attention_mask=mask, labels=labels)   # loss as usual
    ids = wrapped.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8)

The base model is frozen; only the method's tensors (DePT's P, A, B) are trainable.

This is also the one way an input method is made for a model and put in front of it: the assembled model,
``attach_dept`` (text models and native VLMs) and the PEFT integration all call ``build_input_method`` (the method
sized to the embeddings' width, its prompt initialised as ``prompt_init`` says, on their device; ``resolved_settings``
is what a run records of it) and ``wrap_input_method`` (on the input embeddings, or inside a native VLM).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import DePTConfig
from .native import NativeFamily, NativeVLMWrapper, native_family
from .prompt import SoftPrompt, position_ids_from_mask
from .registry import MethodContext, get_method


class DePTWrapper(nn.Module):
    """Runs the input method (``dept``: a ``DePT``) on the embeddings of ``input_ids`` (or on given
    ``inputs_embeds``), then the model.

    Decoder-only models: the input may be left-padded (A is applied by real positions), and
    ``labels`` are shifted by the prompt length automatically. ``prompt_ids`` picks each example's prompt when
    there are several (``DePTConfig.num_prompts``).
    """

    backbone_prefix = "model."  # its parameters under this name are the frozen model's

    def __init__(self, model: nn.Module, dept: SoftPrompt, method: str = "dept"):
        super().__init__()
        self.model, self.dept, self.method_name = model, dept, method
        self.is_encoder_decoder = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))

    def _inputs(self, input_ids, inputs_embeds, attention_mask, prompt_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        positions = None if self.is_encoder_decoder else position_ids_from_mask(attention_mask)
        return self.dept(inputs_embeds, attention_mask, position_ids=positions, prompt_ids=prompt_ids)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, prompt_ids=None, **kwargs):
        embeds, mask = self._inputs(input_ids, inputs_embeds, attention_mask, prompt_ids)
        if labels is not None:
            labels = labels.contiguous()  # HF losses call .view() on labels; a slice like ids[:, :3] is not
            if not self.is_encoder_decoder:
                pad = labels.new_full((labels.shape[0], self.dept.prompt_length), -100)
                labels = torch.cat([pad, labels], 1)
        return self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, inputs_embeds=None, prompt_ids=None, **kwargs):
        embeds, mask = self._inputs(input_ids, inputs_embeds, attention_mask, prompt_ids)
        return self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)


def build_input_method(method: str, dept: DePTConfig, settings: Any, embeddings: nn.Module,
                       tokenizer=None) -> SoftPrompt:
    """A new input method ``method`` (its ``settings``: the method's own section, None for its defaults) for a
    backbone whose input embeddings are ``embeddings``."""
    chosen = get_method(method)
    if chosen.adapter is None:
        raise ConfigError(f"method {method!r} changes the backbone itself; attach_dept takes input methods "
                          "(pt, dept, adept, ...)")
    adapter = chosen.adapter(MethodContext(dept, settings, embeddings.weight.shape[1]))
    adapter.initialize_prompt(tokenizer, embeddings)
    return adapter.to(embeddings.weight.device)


def resolved_settings(adapter: SoftPrompt) -> tuple[DePTConfig, Any]:
    """(the prompt's settings as built, with the width; the method's own section as built, e.g. ADePT's r resolved
    from the budget, or None)."""
    return adapter.config, getattr(adapter, "section_settings", None)


def wrap_input_method(model: nn.Module, adapter: SoftPrompt | None, method: str,
                      family: NativeFamily | None = None) -> DePTWrapper | NativeVLMWrapper:
    """``model`` called through ``adapter``: on its input embeddings (``DePTWrapper``), or for a native VLM on its
    language model's input after the image merge (``NativeVLMWrapper``; ``adapter`` None there: a backbone method
    changed the model instead)."""
    family = family or native_family(model)
    if family is None:
        return DePTWrapper(model, adapter, method)
    return NativeVLMWrapper(model, adapter, family, method)


def attach_dept(model: nn.Module, config: DePTConfig, freeze: bool = True, method: str = "dept", settings=None,
                tokenizer=None) -> DePTWrapper | NativeVLMWrapper:
    """Freeze ``model`` and wrap it with a new DePT (or another input ``method``: ``pt``, ``adept`` with its
    ``settings``) sized to its input embeddings, its prompt initialised as ``config.prompt_init`` says (``text``
    needs the ``tokenizer``). A native vision-language model (LLaVA, Qwen2-VL, PaliGemma, Idefics3 / SmolVLM,
    Florence-2, BLIP-2) gets the method on its language model's input after the image merge
    (``NativeVLMWrapper``); any other model on its input embeddings (``DePTWrapper``)."""
    if get_method(method).adapter is None:
        raise ConfigError(f"method {method!r} changes the backbone itself; attach_dept takes input methods "
                          "(pt, dept, adept, ...)")
    family = native_family(model)  # a VLM of no supported family is refused here, before anything changes
    if freeze:
        model.requires_grad_(False)
        model.eval()
    adapter = build_input_method(method, config, settings, model.get_input_embeddings(), tokenizer)
    return wrap_input_method(model, adapter, method, family)
