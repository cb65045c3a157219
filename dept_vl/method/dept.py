"""The DePT module: a soft prompt P plus a position-wise low-rank update A @ B of the input embeddings.

This is the only place in dept-vl where ``scaling * (A @ B)`` is computed.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..io import load_state_checked
from .checkpoint import read_adapter, save_adapter
from .config import DePTConfig


class DePT(nn.Module):
    """Decomposed Prompt Tuning on any ``(batch, length, dim)`` input embeddings.

    ``forward(X, mask)`` returns ``[P ; X + scaling * (A @ B)[:n]]`` (the update only where ``mask`` is 1) and the
    mask extended by ones for P. Inputs are never padded to ``max_length``: A is sliced to the real length ``n``.

    Parameters (trainable): ``prompt_embeddings`` (l x d), ``lora_embedding_A`` (s x r),
    ``lora_embedding_B`` (r x d). With ``r = 0`` it is plain prompt tuning and A, B are absent. With
    ``num_prompts`` > 1 (a multi-task model) P is (num_prompts x l x d): each example gets the prompt
    ``prompt_ids`` names, and all share A and B.
    """

    def __init__(self, config: DePTConfig, hidden_size: int | None = None):
        super().__init__()
        d = hidden_size or config.hidden_size
        if d is None:
            raise ConfigError("DePT needs hidden_size (argument or DePTConfig.hidden_size)")
        if config.hidden_size is not None and hidden_size is not None and config.hidden_size != hidden_size:
            raise ConfigError(f"DePTConfig.hidden_size={config.hidden_size} but hidden_size={hidden_size} was passed")
        config = DePTConfig.from_dict({**config.to_dict(), "hidden_size": int(d)})
        self.config = config
        prompts = () if config.num_prompts == 1 else (config.num_prompts,)
        self.prompt_embeddings = nn.Parameter(torch.empty(*prompts, config.prompt_length, d))
        if config.r > 0:
            self.lora_embedding_A = nn.Parameter(torch.empty(config.max_length, config.r))
            self.lora_embedding_B = nn.Parameter(torch.empty(config.r, d))
        else:
            self.register_parameter("lora_embedding_A", None)
            self.register_parameter("lora_embedding_B", None)
        self._warned_truncation = False
        self.reset_parameters()

    @property
    def hidden_size(self) -> int:
        return self.prompt_embeddings.shape[-1]

    @property
    def scaling(self) -> float:
        return self.config.scaling

    def reset_parameters(self) -> None:
        """P ~ N(0, prompt_init_std); A Kaiming-uniform (a = sqrt 5); B zeros, so A @ B = 0 at step 0."""
        nn.init.normal_(self.prompt_embeddings, std=self.config.prompt_init_std)
        if self.lora_embedding_A is not None:
            nn.init.kaiming_uniform_(self.lora_embedding_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_embedding_B)

    # ---- prompt initialisation from the backbone's vocabulary -------------------------------------
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
            raise ConfigError(f"embedding width {weight.shape[-1]} does not match DePT hidden_size {self.hidden_size}")
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

    # ---- the method ---------------------------------------------------------------------------
    def low_rank_update(self, length: int, position_ids: torch.Tensor | None = None) -> torch.Tensor | None:
        """``scaling * (A @ B)`` for positions ``0..length-1`` (shape (length, d)), or for the given
        ``position_ids`` (shape (batch, length, d)). None when r = 0."""
        if self.lora_embedding_A is None:
            return None
        if position_ids is None:
            return (self.lora_embedding_A[:length] @ self.lora_embedding_B) * self.scaling
        rows = self.lora_embedding_A[position_ids.clamp(0, self.config.max_length - 1)]
        return (rows @ self.lora_embedding_B) * self.scaling

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        prompt_ids: torch.Tensor | int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``([P ; X + scaling * (A @ B)[:n]], [1...1 ; mask])``.

        ``position_ids`` (batch, n): the index into A of each token. Leave it None for right-padded or
        unpadded input (row i of A is position i). For left-padded batches pass the real positions,
        e.g. ``position_ids_from_mask(mask)``, so A is applied by each sequence's real positions.
        ``prompt_ids``: which prompt the examples get when there are several (``num_prompts`` > 1): one index for
        the whole batch, or a (batch,) tensor.
        """
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.hidden_size:
            raise InputError(
                f"DePT expects inputs_embeds of shape (batch, length, {self.hidden_size}), got {tuple(inputs_embeds.shape)}"
            )
        batch, n, _ = inputs_embeds.shape
        padded = attention_mask is not None
        if attention_mask is None:
            attention_mask = torch.ones(batch, n, dtype=torch.long, device=inputs_embeds.device)
        if n > self.config.max_length:
            if not self.config.truncate:
                raise InputError(
                    f"input length {n} exceeds DePT max_length {self.config.max_length} "
                    "(raise max_length, shorten the input, or set truncate=True)"
                )
            if not self._warned_truncation:
                warnings.warn(f"truncating inputs of length {n} to DePT max_length {self.config.max_length}")
                self._warned_truncation = True
            n = self.config.max_length
            inputs_embeds, attention_mask = inputs_embeds[:, :n], attention_mask[:, :n]
            position_ids = None if position_ids is None else position_ids[:, :n]
        update = self.low_rank_update(n, position_ids)
        if update is not None:  # real tokens only: padding (of a batch or of a length bucket) never meets A
            update = update.to(inputs_embeds.dtype)
            inputs_embeds = inputs_embeds + (update * attention_mask.unsqueeze(-1).to(update.dtype) if padded else update)
        prompt = self.prompts(batch, prompt_ids).to(inputs_embeds.dtype)
        prompt_mask = attention_mask.new_ones(batch, self.config.prompt_length)
        return torch.cat([prompt, inputs_embeds], dim=1), torch.cat([prompt_mask, attention_mask], dim=1)

    def prompts(self, batch: int, prompt_ids: torch.Tensor | int | None = None) -> torch.Tensor:
        """(batch, l, d): P for every example; with several prompts, the one ``prompt_ids`` names for all (an int)
        or for each example (a (batch,) tensor)."""
        if self.config.num_prompts == 1:
            return self.prompt_embeddings.unsqueeze(0).expand(batch, -1, -1)
        if isinstance(prompt_ids, int):
            return self.prompt_embeddings[prompt_ids].unsqueeze(0).expand(batch, -1, -1)
        if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.shape != (batch,):
            raise InputError(f"this DePT has {self.config.num_prompts} prompts (one per task): give prompt_ids, one "
                             "index for the batch or one per example")
        return self.prompt_embeddings[prompt_ids.to(self.prompt_embeddings.device)]

    # ---- checkpoints --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (atomically)."""
        save_adapter(directory, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, hidden_size: int | None = None) -> "DePT":
        """Load a dept-vl DePT checkpoint, or an official ZhengxiangShi/DePT one (``PROMPT_TUNING_LORA``).
        ``hidden_size``: the width of the model it is meant for (a checkpoint of another width is refused)."""
        config, state = read_adapter(directory, hidden_size=hidden_size)
        dept = cls(config)
        load_state_checked(dept, state, str(directory))
        return dept

    def extra_repr(self) -> str:
        c = self.config
        prompts = f", num_prompts={c.num_prompts}" if c.num_prompts > 1 else ""
        return (f"prompt_length={c.prompt_length}, r={c.r}, max_length={c.max_length}, d={self.hidden_size}, "
                f"scaling={c.scaling:.4g}{prompts}")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Real position of each token: 0 at the first non-pad token of each row (handles left padding)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
