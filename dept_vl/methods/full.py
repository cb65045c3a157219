"""Full fine-tuning (``--method full``): every weight of the text backbone trains; the one method whose
checkpoint is not adapter-only (it is written as ``model.safetensors``, not ``adapter_model.safetensors``)."""

from __future__ import annotations

from torch import nn

from .registry import register_method


def unfreeze(model: nn.Module, settings=None) -> nn.Module:
    """Make every weight of the backbone trainable."""
    return model.requires_grad_(True)


register_method("full", help="full fine-tuning of every text-backbone weight", backbone=unfreeze, adapter_only=False)
