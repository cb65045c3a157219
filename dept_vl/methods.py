"""What ``--method`` trains on the same frozen backbone: dept | pt | lora | full.

- ``dept``: DePT's prompt P plus the low-rank pair A, B (the model config's ``dept`` section).
- ``pt``: vanilla prompt tuning at the same budget: m = round(DePT parameters / d) prompt tokens, no A, B.
- ``lora``: LoRA on the backbone's attention through ``peft`` (no prompt).
- ``full``: every text-backbone weight trains (no prompt); the only method whose checkpoint is not adapter-only.
The visual projection trains under every method; the vision encoder always stays frozen.
"""

from __future__ import annotations

import dataclasses

from .config import LoraSettings
from .dept_config import DePTConfig
from .errors import ConfigError


def uses_prompt(method: str) -> bool:
    return method in ("dept", "pt")


def prompt_tuning_config(dept: DePTConfig, hidden_size: int) -> DePTConfig:
    """Vanilla prompt tuning with the parameter budget of ``dept``: l*d + s*r + r*d = m*d."""
    if dept.r == 0:
        return dept
    m = round(dept.num_parameters(hidden_size) / hidden_size)
    return dataclasses.replace(dept, prompt_length=m, r=0)


def add_lora(model, settings: LoraSettings):
    """Inject LoRA layers into ``model`` in place (``peft``); only they become trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules or _default_targets(model), bias="none")
    try:
        model = inject_adapter_in_model(config, model)
    except ValueError as err:
        raise ConfigError(f"cannot apply LoRA to {type(model).__name__}: {err}") from None
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def _default_targets(model) -> list[str]:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    model_type = model.config.model_type
    if model_type not in MAPPING:
        raise ConfigError(f"no default LoRA target modules for {model_type!r}; set lora.target_modules")
    return list(MAPPING[model_type])
