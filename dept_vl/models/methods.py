"""What trains on the frozen backbone (``--method``), as a registry: peft-style, one registration per method.

- ``pt``: vanilla prompt tuning at DePT's budget: m = round(DePT parameters / d) prompt tokens, no A, B.
- ``dept``: DePT's prompt P plus the low-rank pair A, B (the model config's ``dept`` section).
- ``lora``: LoRA on the backbone's attention through ``peft`` (no prompt).
- ``full``: every text-backbone weight trains (no prompt); the only method whose checkpoint is not adapter-only.

The visual projection trains under every method; the vision encoder always stays frozen. A method is a function
that sets up the trainable parts of a ``VisionLanguageModel`` while it is built (``model.text`` is loaded and
frozen, ``model.dept`` is None); a new one is that function plus ``@register_method``. ``--method`` offers every
registered method but the reference points a benchmark registers (``reference=True``, e.g. the bench's ``bare``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .._registry import Registry
from ..errors import ConfigError
from ..method import DePT, DePTConfig


@dataclass(frozen=True)
class Method:
    name: str
    setup: Callable  # setup(model): give the model under construction its trainable parts
    help: str
    adapter_only: bool = True  # its checkpoints hold only the trained weights, not the whole backbone
    modifies_backbone: bool = False  # changes the text backbone's modules or weights (a shared one must be copied)
    reference: bool = False  # a reference point for benchmarks, not offered by --method


_METHODS: Registry[Method] = Registry("method")


def register_method(name: str, *, help: str, adapter_only: bool = True, modifies_backbone: bool = False,
                    reference: bool = False):
    """Decorator: register ``setup(model)`` as the method ``name``."""

    def wrap(setup: Callable) -> Callable:
        _METHODS.add(name, Method(name, setup, help, adapter_only, modifies_backbone, reference))
        return setup

    return wrap


def get_method(name: str) -> Method:
    return _METHODS.get(name)


def list_methods(reference: bool = False) -> list[str]:
    """Registered methods in registration order; reference points only when ``reference``."""
    return [n for n in _METHODS.names() if reference or not _METHODS.get(n).reference]


# ---- the four methods --------------------------------------------------------------------------------------
def attach_prompt(model, config: DePTConfig) -> DePT:
    """Give ``model`` a DePT of ``config`` sized to its text backbone (with one prompt per task of a multi-task
    model), initialised as the config says."""
    config = dataclasses.replace(config, num_prompts=model.config.num_prompts)
    model.dept = DePT(config, hidden_size=model.text.hidden_size)
    model.dept.initialize_prompt(model.text.tokenizer, model.text.embeddings)
    model.config.dept = model.dept.config  # now carries hidden_size
    return model.dept


def prompt_tuning_config(dept: DePTConfig, hidden_size: int, num_prompts: int | None = None) -> DePTConfig:
    """Vanilla prompt tuning with the parameter budget of ``dept`` with ``num_prompts`` prompts (default its own):
    k*l*d + s*r + r*d = k*m*d."""
    k = dept.num_prompts if num_prompts is None else num_prompts
    dept = dataclasses.replace(dept, num_prompts=k)
    if dept.r == 0:
        return dept
    m = round(dept.num_parameters(hidden_size) / (k * hidden_size))
    return dataclasses.replace(dept, prompt_length=m, r=0)


@register_method("pt", help="vanilla prompt tuning with DePT's parameter budget (m = budget / d tokens)")
def _prompt_tuning(model) -> None:
    attach_prompt(model, prompt_tuning_config(model.config.dept, model.text.hidden_size, model.config.num_prompts))


@register_method("dept", help="DePT: soft prompt P plus the low-rank update A @ B of the input embeddings")
def _dept(model) -> None:
    attach_prompt(model, model.config.dept)


@register_method("lora", help="LoRA on the text backbone through peft (model.lora: r, alpha, targets)",
                 modifies_backbone=True)
def _lora(model) -> None:
    model.text.model = add_lora(model.text.model, model.config.lora)


@register_method("full", help="full fine-tuning of every text-backbone weight", adapter_only=False,
                 modifies_backbone=True)
def _full(model) -> None:
    model.text.unfreeze()


# ---- LoRA through peft ---------------------------------------------------------------------------------------
def add_lora(model, settings) -> torch.nn.Module:
    """Inject LoRA layers (``settings``: a LoraSettings) into ``model`` in place; only they become trainable."""
    from peft import LoraConfig, inject_adapter_in_model

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
