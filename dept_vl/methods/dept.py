"""The DePT module: a soft prompt P plus a position-wise low-rank update A @ B of the input embeddings; and the
registration of ``pt`` and ``dept``.

``DePT.low_rank_update`` is the only place in dept-vl where ``scaling * (A @ B)`` is computed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from ..io import load_state_checked
from .budget import Budget
from .checkpoint import DEPT_PEFT_TYPE, read_adapter, save_adapter
from .config import DePTConfig
from .prompt import SoftPrompt
from .registry import register_method


class DePT(SoftPrompt):
    """Decomposed Prompt Tuning on any ``(batch, length, dim)`` input embeddings.

    ``forward(X, mask)`` returns ``[P ; X + scaling * (A @ B)[:n]]`` (the update only where ``mask`` is 1) and the
    mask extended by ones for P. Inputs are never padded to ``max_length``: A is sliced to the real length ``n``.

    Parameters (trainable): ``prompt_embeddings`` (l x d), ``lora_embedding_A`` (s x r),
    ``lora_embedding_B`` (r x d). With ``r = 0`` it is plain prompt tuning and A, B are absent. With
    ``num_prompts`` > 1 (a multi-task model) P is (num_prompts x l x d): each example gets the prompt
    ``prompt_ids`` names, and all share A and B.
    """

    peft_type = DEPT_PEFT_TYPE

    def __init__(self, config: DePTConfig, hidden_size: int | None = None):
        super().__init__(config, hidden_size)
        config, d = self.config, self.hidden_size
        if config.r > 0:
            self.lora_embedding_A = nn.Parameter(torch.empty(config.max_length, config.r))
            self.lora_embedding_B = nn.Parameter(torch.empty(config.r, d))
        else:
            self.register_parameter("lora_embedding_A", None)
            self.register_parameter("lora_embedding_B", None)
        self.register_buffer("frozen_update", None, persistent=False)  # scaling * A @ B for inference
        self.reset_parameters()

    @property
    def scaling(self) -> float:
        return self.config.scaling

    def reset_parameters(self) -> None:
        """P ~ N(0, prompt_init_std); A Kaiming-uniform (a = sqrt 5); B zeros, so A @ B = 0 at step 0."""
        super().reset_parameters()
        if self.lora_embedding_A is not None:
            nn.init.kaiming_uniform_(self.lora_embedding_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_embedding_B)

    # ---- the method ---------------------------------------------------------------------------------------
    def low_rank_update(self, length: int, position_ids: torch.Tensor | None = None) -> torch.Tensor | None:
        """``scaling * (A @ B)`` for positions ``0..length-1`` (shape (length, d)), or for the given
        ``position_ids`` (shape (batch, length, d)). None when r = 0. This is the only place in dept-vl where
        ``scaling * (A @ B)`` is computed."""
        if self.lora_embedding_A is None:
            return None
        table = self.frozen_update if not torch.is_grad_enabled() else None
        if table is not None:  # inference: rows of the table computed once
            return table[:length] if position_ids is None else table[position_ids.clamp(0, self.config.max_length - 1)]
        if position_ids is None:
            return (self.lora_embedding_A[:length] @ self.lora_embedding_B) * self.scaling
        rows = self.lora_embedding_A[position_ids.clamp(0, self.config.max_length - 1)]
        return (rows @ self.lora_embedding_B) * self.scaling

    def update(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor | None:
        return self.low_rank_update(inputs_embeds.shape[1], position_ids)

    def freeze_update(self) -> None:
        """For inference (predict, serve): ``scaling * A @ B`` (s x d) is computed now, once, and each call without
        gradients gathers its rows (call it again after changing A or B; training never reads it)."""
        if self.lora_embedding_A is not None:
            with torch.no_grad():
                self.frozen_update = (self.lora_embedding_A @ self.lora_embedding_B) * self.scaling

    # ---- checkpoints --------------------------------------------------------------------------------------
    def adapter_settings(self) -> dict:
        """What ``adapter_config.json`` holds besides ``peft_type``: the DePTConfig (PEFT's ``DePTPeftConfig`` has
        the same fields)."""
        return self.config.to_dict()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (atomically)."""
        save_adapter(directory, self.peft_type, self.adapter_settings(), self.state_dict())

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


# ---- registration: vanilla prompt tuning and DePT --------------------------------------------------------------
GROUPS = {"prompt_embeddings": "prompt", "lora_embedding_A": "lowrank", "lora_embedding_B": "lowrank"}


def dept_group(name: str) -> str | None:
    """P learns at the prompt rate, A and B at the low-rank rate."""
    return GROUPS.get(name.rsplit(".", 1)[-1])


def prompt_tuning_at(budget: Budget) -> DePTConfig:
    """Vanilla prompt tuning spending ``budget``: m = round(budget / (k * d)) tokens per prompt, no A, B."""
    m = max(1, round(budget.params / (budget.num_prompts * budget.hidden_size)))
    return DePTConfig(prompt_length=m, r=0, max_length=budget.max_length, num_prompts=budget.num_prompts)


def dept_at(budget: Budget) -> DePTConfig:
    """DePT with the budget's prompt length and the largest r that fits: k*l*d + s*r + r*d <= budget."""
    r = max(0, budget.left_after_prompts // (budget.max_length + budget.hidden_size))
    return DePTConfig(prompt_length=budget.prompt_length, r=r, max_length=budget.max_length,
                      num_prompts=budget.num_prompts)


def prompt_tuning_config(dept: DePTConfig, hidden_size: int, num_prompts: int | None = None) -> DePTConfig:
    """``dept`` turned into vanilla prompt tuning with its parameter budget (with ``num_prompts`` prompts, default
    its own): k*l*d + s*r + r*d = k*m*d; every other setting (initialisation, ...) kept."""
    dept = dataclasses.replace(dept, num_prompts=dept.num_prompts if num_prompts is None else num_prompts)
    if dept.r == 0:
        return dept
    return dataclasses.replace(dept, prompt_length=prompt_tuning_at(Budget.of(dept, hidden_size)).prompt_length, r=0)


register_method("pt", help="vanilla prompt tuning with DePT's parameter budget (m = budget / d tokens)",
                adapter=lambda ctx: DePT(prompt_tuning_config(ctx.dept, ctx.hidden_size), ctx.hidden_size),
                settings=DePTConfig, section="dept", param_group=dept_group, at_budget=prompt_tuning_at)
register_method("dept", help="DePT: soft prompt P plus the low-rank update A @ B of the input embeddings",
                adapter=lambda ctx: DePT(ctx.dept, ctx.hidden_size), settings=DePTConfig, section="dept",
                param_group=dept_group, at_budget=dept_at)
