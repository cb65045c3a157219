"""What trains on a frozen backbone (``--method``), as a registry: peft-style, one registration per method.

A method is one ``Method`` record, registered with ``register_method``. It carries everything the rest of dept-vl
asks about it, so that a new method is one file plus its registration:

- ``adapter`` (input methods: pt, dept, adept) builds the module that rewrites the input sequence,
  ``(inputs_embeds, mask, position_ids, prompt_ids) -> (embeds, mask)``, from a ``MethodContext``; or
  ``backbone`` (lora, full) changes the frozen backbone model in place and returns it;
- ``settings`` / ``section``: its settings class and the model-config section holding them (``lora:``, ``adept:``;
  the prompt methods share ``dept:``);
- ``param_group``: which learning-rate group each of its own trainable tensors belongs to (``prompt``, ``lowrank``,
  ``backbone``; anything else is the projection's ``other``);
- ``at_budget``: its settings at a given trainable-parameter budget (``Budget``), for ``--method pt``, the benches and
  ``dept-vl budget``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .._registry import Registry
from ..errors import ConfigError
from .budget import Budget
from .config import DePTConfig

GROUPS = ("prompt", "lowrank", "other", "backbone")  # the learning-rate groups a trainable tensor can belong to


@dataclass(frozen=True)
class MethodContext:
    """What an input method's ``adapter`` builder gets: the prompt settings (``dept:``, with the model's number of
    prompts), the method's own settings, the backbone's width d, and the budget of ``dept`` at that width."""

    dept: DePTConfig
    settings: Any
    hidden_size: int

    @property
    def budget(self) -> Budget:
        return Budget.of(self.dept, self.hidden_size)


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    adapter: Callable[[MethodContext], nn.Module] | None = None  # input methods: the input-sequence module
    backbone: Callable[[nn.Module, Any], nn.Module] | None = None  # backbone methods: (hf model, settings) -> model
    settings: type | None = None  # its settings dataclass
    section: str | None = None  # the model-config key of its settings
    param_group: Callable[[str], str | None] = lambda name: None  # its own tensors' groups, by parameter name
    at_budget: Callable[[Budget], Any] | None = None  # its settings at a parameter budget (None: has no budget)
    adapter_only: bool = True  # its checkpoints hold only the trained weights, not the whole backbone
    reference: bool = False  # a reference point for benchmarks, not offered by --method

    @property
    def modifies_backbone(self) -> bool:
        """It changes the text backbone's modules or weights (a shared backbone must be copied first)."""
        return self.backbone is not None

    def default_settings(self) -> Any:
        return None if self.settings is None else self.settings()

    def group_of(self, name: str, in_backbone: bool) -> str:
        """The learning-rate group of the trainable tensor ``name``: the method's rule, else ``backbone`` for a
        backbone weight, else ``other`` (the visual projection)."""
        group = self.param_group(name)
        if group is not None:
            if group not in GROUPS:
                raise ConfigError(f"method {self.name!r} puts {name} in group {group!r}; groups: {', '.join(GROUPS)}")
            return group
        return "backbone" if in_backbone else "other"


_METHODS: Registry[Method] = Registry("method")


def register_method(name: str, *, help: str, adapter=None, backbone=None, settings: type | None = None,
                    section: str | None = None, param_group=None, at_budget=None, adapter_only: bool = True,
                    reference: bool = False) -> Method:
    """Register a method (see ``Method``); exactly one of ``adapter`` (an input method) and ``backbone``."""
    if (adapter is None) == (backbone is None):
        raise ConfigError(f"method {name!r}: give exactly one of adapter= (input sequence) and backbone=")
    if (settings is None) != (section is None):
        raise ConfigError(f"method {name!r}: settings= and section= go together")
    method = Method(name, help, adapter, backbone, settings, section, param_group or (lambda _: None), at_budget,
                    adapter_only, reference)
    return _METHODS.add(name, method)


def get_method(name: str) -> Method:
    return _METHODS.get(name)


def list_methods(reference: bool = False) -> list[str]:
    """Registered methods in registration order; reference points only when ``reference``."""
    return [n for n in _METHODS.names() if reference or not _METHODS.get(n).reference]


def method_sections() -> dict[str, type]:
    """Model-config section -> settings class, for every registered method that has its own section."""
    return {m.section: m.settings for m in map(_METHODS.get, _METHODS.names())
            if m.section is not None and m.section != "dept"}


def settings_at_budget(name: str, budget: Budget):
    """The settings of method ``name`` that spend ``budget``: for a method with a section of its own (adept, lora);
    None for the others (pt and dept take DePT's settings, whose budget it is; full has none)."""
    method = get_method(name)
    if method.section in (None, "dept") or method.at_budget is None:
        return None
    return method.at_budget(budget)
