"""ADePT (Adaptive Decomposed Prompt Tuning; Tang, Hu & Liu, ICLR 2025, arXiv 2501.03291), DePT's successor.

DePT offsets the i-th input token by row i of ``scaling * A @ B``, whatever the token is. ADePT keeps the short
prompt P and replaces that position-wise table by a small feed-forward network shared by every token, so each
token's offset depends on the token itself:

    [P ; X + relu(X @ W_down + b_down) @ W_up + b_up]

with W_down (d x r) Kaiming-uniform, W_up (r x d), b_down (r) and b_up (d) zeros, so that at step 0 ADePT is
prompt tuning with l tokens, as DePT is (the official code: HungerPWAY/ADePT, ``PROMPT_TUNING_LORAX``). At equal
budget, l*d + 2*r*d + r + d <= m*d: on t5-base (d = 768) with m = 100 and l = 60 that is r = 19, the paper's.
Its network learns at the low-rank learning rate (``--lowrank-lr``), P at the prompt rate.

This file is the whole method: the module, its settings, its budget rule, its parameter groups and its
registration (``--method adept``; settings in the model config's ``adept:`` section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._dataclass import check_int, setting
from ..errors import ConfigError
from ..io import load_state_checked
from .budget import Budget
from .checkpoint import read_native_adapter, save_adapter
from .config import DePTConfig
from .prompt import SoftPrompt
from .registry import MethodContext, register_method

PEFT_TYPE = "ADEPT"
FFN = ("ffn_down", "ffn_down_bias", "ffn_up", "ffn_up_bias")


@dataclass
class ADePTSettings:
    """ADePT's own settings (the prompt's are DePT's: ``dept.prompt_length``, ``dept.prompt_init``, ...)."""

    r: int | None = setting(None, "bottleneck width of the token-shared feed-forward network; default: the largest "
                            "that keeps DePT's parameter budget (t5-base, l = 60, m = 100: 19)")

    def __post_init__(self) -> None:
        if self.r is not None:
            check_int("adept.r", self.r, 1)


class ADePT(SoftPrompt):
    """P (l x d) plus the token-wise offset ``relu(X @ W_down + b_down) @ W_up + b_up`` of the input embeddings.
    ``config`` is DePT's (its r and max_length set the budget ADePT matches; ADePT has no A, B of its own)."""

    peft_type = PEFT_TYPE

    def __init__(self, config: DePTConfig, r: int, hidden_size: int | None = None):
        super().__init__(config, hidden_size)
        d, self.r = self.hidden_size, check_int("adept.r", r, 1)
        self.ffn_down = nn.Parameter(torch.empty(d, r))
        self.ffn_down_bias = nn.Parameter(torch.empty(r))
        self.ffn_up = nn.Parameter(torch.empty(r, d))
        self.ffn_up_bias = nn.Parameter(torch.empty(d))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """P ~ N(0, prompt_init_std); W_down Kaiming-uniform (a = sqrt 5); the rest zeros: no offset at step 0."""
        super().reset_parameters()
        nn.init.kaiming_uniform_(self.ffn_down, a=math.sqrt(5))
        for zero in (self.ffn_down_bias, self.ffn_up, self.ffn_up_bias):
            nn.init.zeros_(zero)

    @property
    def section_settings(self) -> ADePTSettings:
        """Its ``adept:`` settings as built (r resolved from the budget when it was left to it)."""
        return ADePTSettings(r=self.r)

    def update(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        """Each token's own offset (its position plays no part)."""
        x = inputs_embeds.to(self.ffn_down.dtype)
        return torch.relu(x @ self.ffn_down + self.ffn_down_bias) @ self.ffn_up + self.ffn_up_bias

    def adapter_settings(self) -> dict:
        """What ``adapter_config.json`` holds besides ``peft_type``: the prompt's settings and r (``adept_r``)."""
        return {**self.config.to_dict(), "adept_r": self.r}

    def save_pretrained(self, directory: str | Path) -> None:
        """``adapter_config.json`` (peft_type ADEPT, the prompt's settings and r) + ``adapter_model.safetensors``."""
        save_adapter(directory, self.peft_type, self.adapter_settings(), self.state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ADePT":
        raw, state = read_native_adapter(directory, PEFT_TYPE)
        r = raw.pop("adept_r", None)
        adept = cls(DePTConfig.from_dict(raw), r)
        load_state_checked(adept, state, str(directory))
        return adept

    def extra_repr(self) -> str:
        c = self.config
        return f"prompt_length={c.prompt_length}, r={self.r}, d={self.hidden_size}"


def adept_at(budget: Budget) -> ADePTSettings:
    """The largest r with k*l*d + d*r + r + r*d + d <= budget (a ConfigError where not even r = 1 fits)."""
    d = budget.hidden_size
    r = (budget.left_after_prompts - d) // (2 * d + 1)
    if r < 1:
        raise ConfigError(f"ADePT's network does not fit in a budget of {budget.params:,} parameters after prompts of "
                          f"{budget.prompt_length} tokens (shorten the prompt, or set adept.r)")
    return ADePTSettings(r=r)


def build_adept(ctx: MethodContext) -> ADePT:
    settings = ctx.settings or ADePTSettings()
    r = settings.r if settings.r is not None else adept_at(ctx.budget).r
    return ADePT(ctx.dept, r, ctx.hidden_size)


def adept_group(name: str) -> str | None:
    """P learns at the prompt rate, the feed-forward network at the low-rank rate."""
    leaf = name.rsplit(".", 1)[-1]
    return "prompt" if leaf == "prompt_embeddings" else "lowrank" if leaf in FFN else None


register_method("adept", help="ADePT: soft prompt P plus a token-shared feed-forward offset of each input embedding "
                "(ICLR 2025), at DePT's budget", adapter=build_adept, settings=ADePTSettings, section="adept",
                param_group=adept_group, at_budget=adept_at)
