"""``SoftPrompt``: what every input method shares: prompts P prepended to the input sequence, their
initialisation from the backbone's vocabulary, and the one ``forward`` that assembles ``[P ; update(X)]``.

A subclass says how the input embeddings are updated (``update``): DePT adds the position-wise ``scaling * A @ B``,
ADePT a token-wise feed-forward offset, vanilla prompt tuning nothing.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .config import DePTConfig


class SoftPrompt(nn.Module):
    """Prompts P (``num_prompts`` x l x d, or l x d for one) on any ``(batch, length, dim)`` input embeddings.

    ``forward(X, mask)`` returns ``[P ; update(X)]`` (the update only where ``mask`` is 1) and the mask extended by
    ones for P. Inputs are never padded to ``max_length``.
    """

    def __init__(self, config: DePTConfig, hidden_size: int | None = None):
        super().__init__()
        d = hidden_size or config.hidden_size
        if d is None:
            raise ConfigError(f"{type(self).__name__} needs hidden_size (argument or DePTConfig.hidden_size)")
        if config.hidden_size is not None and hidden_size is not None and config.hidden_size != hidden_size:
            raise ConfigError(f"DePTConfig.hidden_size={config.hidden_size} but hidden_size={hidden_size} was passed")
        self.config = DePTConfig.from_dict({**config.to_dict(), "hidden_size": int(d)})
        prompts = () if config.num_prompts == 1 else (config.num_prompts,)
        self.prompt_embeddings = nn.Parameter(torch.empty(*prompts, config.prompt_length, d))
        self._warned_truncation = False

    @property
    def hidden_size(self) -> int:
        return self.prompt_embeddings.shape[-1]

    @property
    def prompt_length(self) -> int:
        return self.config.prompt_length

    def reset_parameters(self) -> None:
        """P ~ N(0, prompt_init_std) (the official initialisation)."""
        nn.init.normal_(self.prompt_embeddings, std=self.config.prompt_init_std)

    # ---- prompt initialisation from the backbone's vocabulary -------------------------------------------------
    @torch.no_grad()
    def init_prompt_from_text(self, text: str, tokenizer, embeddings: nn.Module) -> None:
        """Initialise P (every prompt of it) from the token embeddings of ``text``, repeated / trimmed to l (as the
        official code)."""
        ids = tokenizer(text)["input_ids"]
        if not ids:
            raise ConfigError(f"prompt_init_text {text!r} tokenises to nothing")
        ids = (ids * math.ceil(self.config.prompt_length / len(ids)))[: self.config.prompt_length]
        self._copy_embeddings(ids, embeddings)

    @torch.no_grad()
    def init_prompt_from_vocab(self, embeddings: nn.Module, generator: torch.Generator | None = None) -> None:
        """Initialise P from the embeddings of l token ids (per prompt) sampled below ``prompt_init_vocab_top_k``."""
        vocab = embeddings.weight.shape[0]
        top_k = min(self.config.prompt_init_vocab_top_k, vocab)
        ids = torch.randint(0, top_k, self.prompt_embeddings.shape[:-1], generator=generator)
        self._copy_embeddings(ids, embeddings)

    def _copy_embeddings(self, ids, embeddings: nn.Module) -> None:
        weight = embeddings(torch.as_tensor(ids, device=embeddings.weight.device))
        if weight.shape[-1] != self.hidden_size:
            raise ConfigError(f"embedding width {weight.shape[-1]} does not match the prompt's width {self.hidden_size}")
        self.prompt_embeddings.copy_(weight.to(self.prompt_embeddings).expand_as(self.prompt_embeddings))

    def initialize_prompt(self, tokenizer=None, embeddings: nn.Module | None = None) -> None:
        """Apply ``config.prompt_init`` ("random" needs nothing; "text" and "vocab" need the backbone)."""
        if self.config.prompt_init == "random":
            return
        if embeddings is None or (self.config.prompt_init == "text" and tokenizer is None):
            raise ConfigError(f"prompt_init={self.config.prompt_init!r} needs the backbone's tokenizer and embeddings")
        if self.config.prompt_init == "text":
            self.init_prompt_from_text(self.config.prompt_init_text, tokenizer, embeddings)
        else:
            self.init_prompt_from_vocab(embeddings)

    # ---- the method ----------------------------------------------------------------------------------------
    def freeze_update(self) -> None:
        """For inference: precompute what does not depend on the input (DePT: ``A @ B``); nothing by default."""

    def update(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor | None:
        """The offset added to the (real tokens of the) input embeddings, broadcastable to them; None for none."""
        return None

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                prompt_ids: torch.Tensor | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``([P ; X + update(X)], [1...1 ; mask])``.

        ``position_ids`` (batch, n): each token's real position (the row of a position-wise update). Leave it None
        for right-padded or unpadded input (position i is row i). For left-padded batches pass the real positions,
        e.g. ``position_ids_from_mask(mask)``. ``prompt_ids``: which prompt the examples get when there are several
        (``num_prompts`` > 1): one index for the whole batch, or a (batch,) tensor.
        """
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.hidden_size:
            raise InputError(f"{type(self).__name__} expects inputs_embeds of shape (batch, length, "
                             f"{self.hidden_size}), got {tuple(inputs_embeds.shape)}")
        batch = inputs_embeds.shape[0]
        padded = attention_mask is not None
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        inputs_embeds, attention_mask, position_ids = self._fit_length(inputs_embeds, attention_mask, position_ids)
        offset = self.update(inputs_embeds, position_ids)
        if offset is not None:  # real tokens only: padding (of a batch or of a length bucket) never meets it
            offset = offset.to(inputs_embeds.dtype)
            inputs_embeds = inputs_embeds + (offset * attention_mask.unsqueeze(-1).to(offset.dtype) if padded else offset)
        prompt = self.prompts(batch, prompt_ids).to(inputs_embeds.dtype)
        prompt_mask = attention_mask.new_ones(batch, self.config.prompt_length)
        return torch.cat([prompt, inputs_embeds], dim=1), torch.cat([prompt_mask, attention_mask], dim=1)

    def fill(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, real: torch.Tensor,
             prompt_ids: torch.Tensor | int | None = None) -> torch.Tensor:
        """The same method on a sequence that already holds l slots for P (a native VLM's merged sequence):
        ``positions`` (batch, n) counts each token's place among the real tokens of its row, slots first. A real
        token at position k < l becomes P[k]; one at p >= l gets the update of row p - l (none past max_length);
        where ``real`` is 0 (padding) nothing changes."""
        l, s = self.config.prompt_length, self.config.max_length
        rows, real = positions - l, real.bool()
        offset = self.update(inputs_embeds, rows.clamp(0, s - 1))
        if offset is not None:
            updated = (real & (rows >= 0) & (rows < s)).unsqueeze(-1)
            inputs_embeds = inputs_embeds + offset.to(inputs_embeds.dtype) * updated.to(inputs_embeds.dtype)
        slot = (real & (rows < 0)).unsqueeze(-1)
        prompts = self.prompts(inputs_embeds.shape[0], prompt_ids).to(inputs_embeds.dtype)
        index = positions.clamp(0, l - 1).unsqueeze(-1).expand(-1, -1, inputs_embeds.shape[-1])
        return torch.where(slot, prompts.gather(1, index), inputs_embeds)

    def _fit_length(self, inputs_embeds, attention_mask, position_ids):
        """Inputs longer than ``max_length`` are an error, or with ``truncate`` are cut (said once)."""
        n = inputs_embeds.shape[1]
        if n <= self.config.max_length:
            return inputs_embeds, attention_mask, position_ids
        if not self.config.truncate:
            raise InputError(f"input length {n} exceeds DePT max_length {self.config.max_length} (raise max_length, "
                             "shorten the input, or set truncate=True)")
        if not self._warned_truncation:
            warnings.warn(f"truncating inputs of length {n} to DePT max_length {self.config.max_length}")
            self._warned_truncation = True
        n = self.config.max_length
        return inputs_embeds[:, :n], attention_mask[:, :n], None if position_ids is None else position_ids[:, :n]

    def prompts(self, batch: int, prompt_ids: torch.Tensor | int | None = None) -> torch.Tensor:
        """(batch, l, d): P for every example; with several prompts, the one ``prompt_ids`` names for all (an int)
        or for each example (a (batch,) tensor)."""
        if self.config.num_prompts == 1:
            return self.prompt_embeddings.unsqueeze(0).expand(batch, -1, -1)
        if isinstance(prompt_ids, int):
            return self.prompt_embeddings[prompt_ids].unsqueeze(0).expand(batch, -1, -1)
        if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.shape != (batch,):
            raise InputError(f"this model has {self.config.num_prompts} prompts (one per task): give prompt_ids, one "
                             "index for the batch or one per example")
        return self.prompt_embeddings[prompt_ids.to(self.prompt_embeddings.device)]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Real position of each token: 0 at the first non-pad token of each row (handles left padding)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
