"""Plug DePT into any model that accepts ``inputs_embeds`` (Hugging Face style), in one call.

    wrapped = attach_dept(model, DePTConfig(prompt_length=20, r=8, max_length=128))
    out = wrapped(input_ids=ids, attention_mask=mask, labels=labels)   # loss as usual
    ids = wrapped.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8)

The base model is frozen; only DePT's P, A, B are trainable.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DePTConfig
from .dept import DePT, position_ids_from_mask


class DePTWrapper(nn.Module):
    """Runs ``DePT`` on the embeddings of ``input_ids`` (or on given ``inputs_embeds``), then the model.

    Decoder-only models: the input may be left-padded (A is applied by real positions), and
    ``labels`` are shifted by the prompt length automatically. ``prompt_ids`` picks each example's prompt when
    the DePT has several (``DePTConfig.num_prompts``).
    """

    def __init__(self, model: nn.Module, dept: DePT):
        super().__init__()
        self.model, self.dept = model, dept
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
                pad = labels.new_full((labels.shape[0], self.dept.config.prompt_length), -100)
                labels = torch.cat([pad, labels], 1)
        return self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, inputs_embeds=None, prompt_ids=None, **kwargs):
        embeds, mask = self._inputs(input_ids, inputs_embeds, attention_mask, prompt_ids)
        return self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)


def attach_dept(model: nn.Module, config: DePTConfig, freeze: bool = True) -> DePTWrapper:
    """Freeze ``model`` and wrap it with a new DePT sized to its input embeddings."""
    if freeze:
        model.requires_grad_(False)
        model.eval()
    embeddings = model.get_input_embeddings()
    dept = DePT(config, hidden_size=embeddings.weight.shape[1]).to(embeddings.weight.device)
    return DePTWrapper(model, dept)
