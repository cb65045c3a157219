"""Gradient (activation) checkpointing of a frozen language model (``--gradient-checkpointing``).

Hugging Face's ``activation_checkpointing_enable`` (``use_reentrant=False``) marks the model's layers; its layers then
recompute their activations in the backward pass, but only in training mode. A frozen backbone stays in eval mode
(its dropout off), so each checkpointable layer also gets a ``forward`` that checkpoints whenever gradients are
recorded, whatever the mode: the backward pass then reaches the input method (P, A, B: the embeddings that require
grad) through the recomputed layers, and dropout stays as it was. The KV cache is off inside a checkpointed layer (a
recompute would write it twice), as Hugging Face does in training mode.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import ConfigError

CACHE_ARGUMENTS = ("cache", "past_key_values", "past_key_value", "layer_past")


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Checkpoint every layer of ``model``'s language model (see the module's docstring); the number of layers."""
    target = model.frozen_language_model  # a native VLM's language model, an assembled model's text backbone
    enable = getattr(target, "activation_checkpointing_enable", None)
    try:
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    except ValueError as err:
        raise ConfigError(f"--gradient-checkpointing: {type(target).__name__} does not support it ({err})") from None
    layers = [m for m in target.modules() if _is_layer(m) and m.gradient_checkpointing]
    for layer in layers:
        if not getattr(layer, "_dept_vl_checkpointed", False):
            layer.forward = _checkpoint_always(layer, layer.forward)
            layer._dept_vl_checkpointed = True
    return len(layers)


def _is_layer(module: nn.Module) -> bool:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return isinstance(module, GradientCheckpointingLayer)


def _checkpoint_always(layer: nn.Module, forward):
    """``forward`` recomputed in the backward pass whenever gradients are recorded (in training mode, Hugging Face's
    own wrapper inside ``forward`` does it)."""

    @functools.wraps(forward)
    def checkpointed(*args, **kwargs):
        if layer.training or not (layer.gradient_checkpointing and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        if kwargs.get("use_cache"):
            kwargs["use_cache"] = False
        for key in CACHE_ARGUMENTS:
            if kwargs.get(key) is not None:
                kwargs[key] = None
        return layer._gradient_checkpointing_func(functools.partial(forward, **kwargs), *args)

    return checkpointed
