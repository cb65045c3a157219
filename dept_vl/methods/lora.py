"""The LoRA baseline (``--method lora``): low-rank adapters on the frozen backbone's attention, through ``peft``.

Its settings live in the model config's ``lora:`` section; at a budget (the benches, ``dept-vl budget``) it takes the
rank whose parameter count on the default target modules comes closest to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._dataclass import check_int, setting
from ..errors import ConfigError
from .budget import Budget
from .registry import register_method


@dataclass
class LoraSettings:
    """The LoRA baseline (``method: lora``), applied to the frozen text backbone through ``peft``."""

    r: int = setting(8, "LoRA rank")
    alpha: float = setting(16.0, "LoRA alpha (scaling alpha / r)")
    dropout: float = setting(0.0, "dropout on the LoRA input")
    target_modules: list[str] | None = setting(None, "module names to adapt; default: peft's choice (T5: q, v)")

    def __post_init__(self) -> None:
        check_int("lora.r", self.r, 1)


def add_lora(model, settings: LoraSettings | None) -> torch.nn.Module:
    """Inject LoRA layers into ``model`` in place; only they become trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    settings = settings or LoraSettings()
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules or default_lora_targets(model), bias="none")
    try:
        model = inject_adapter_in_model(config, model)
    except ValueError as err:
        raise ConfigError(f"cannot apply LoRA to {type(model).__name__}: {err}") from None
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def default_lora_targets(model) -> list[str]:
    """peft's default LoRA target modules for the architecture of ``model`` (T5: q, v)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    model_type = model.config.model_type
    if model_type not in MAPPING:
        raise ConfigError(f"no default LoRA target modules for {model_type!r}; set lora.target_modules")
    return list(MAPPING[model_type])


def lora_rank_for_budget(model, budget: int) -> int:
    """The LoRA rank whose parameter count on ``model``'s default target modules is closest to ``budget``."""
    targets = set(default_lora_targets(model))
    per_rank = sum(m.in_features + m.out_features for name, m in model.named_modules()
                   if name.rsplit(".", 1)[-1] in targets and isinstance(m, torch.nn.Linear))
    return max(1, round(budget / per_rank))


def lora_at(budget: Budget) -> LoraSettings:
    """The rank closest to the budget on the budget's backbone (which LoRA needs: its size depends on the layers)."""
    if budget.backbone is None:
        raise ConfigError("LoRA's rank at a budget depends on the backbone's layers: give the Budget a backbone")
    return LoraSettings(r=lora_rank_for_budget(budget.backbone, budget.params))


register_method("lora", help="LoRA on the text backbone through peft (model.lora: r, alpha, targets)",
                backbone=add_lora, settings=LoraSettings, section="lora", at_budget=lora_at)
