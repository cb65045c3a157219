"""Optimizer parameter groups: one learning rate for the prompt, one for A/B, one for the rest."""

from __future__ import annotations

from torch import nn

from .._dataclass import check_number

PROMPT_KEY = "prompt_embeddings"
LOWRANK_KEYS = ("lora_embedding_A", "lora_embedding_B")


def param_groups(
    model: nn.Module,
    prompt_lr: float,
    lowrank_lr: float,
    weight_decay: float = 0.0,
    other_lr: float | None = None,
    backbone_lr: float | None = None,
) -> list[dict]:
    """Split the trainable parameters of ``model`` into groups for ``torch.optim.AdamW``.

    - ``prompt``: DePT's P (``*prompt_embeddings``), at ``prompt_lr``, no weight decay;
    - ``lowrank``: DePT's A and B, at ``lowrank_lr`` with ``weight_decay``;
    - ``other``: every other trainable parameter (e.g. the visual projection), at ``other_lr``
      (default ``lowrank_lr``) with ``weight_decay``, except biases and norms (no decay);
    - ``backbone``: trainable weights of the text backbone (``text.*``: LoRA or full fine-tuning), at
      ``backbone_lr`` (default ``other_lr``), biases and norms without decay.
    Empty groups are dropped. Frozen parameters are never included.
    """
    for name, lr in (("prompt_lr", prompt_lr), ("lowrank_lr", lowrank_lr), ("other_lr", other_lr),
                     ("backbone_lr", backbone_lr)):
        if lr is not None:
            check_number(name, lr, above=0)
    other_lr = lowrank_lr if other_lr is None else other_lr
    backbone_lr = other_lr if backbone_lr is None else backbone_lr
    buckets: dict[str, list] = {"prompt": [], "lowrank": [], "other": [], "other_no_decay": [], "backbone": [],
                                "backbone_no_decay": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == PROMPT_KEY:
            buckets["prompt"].append(param)
        elif leaf in LOWRANK_KEYS:
            buckets["lowrank"].append(param)
        elif name.startswith("text."):
            buckets["backbone_no_decay" if param.dim() < 2 else "backbone"].append(param)
        elif param.dim() < 2:
            buckets["other_no_decay"].append(param)
        else:
            buckets["other"].append(param)
    groups = [
        {"name": "prompt", "params": buckets["prompt"], "lr": prompt_lr, "weight_decay": 0.0},
        {"name": "lowrank", "params": buckets["lowrank"], "lr": lowrank_lr, "weight_decay": weight_decay},
        {"name": "other", "params": buckets["other"], "lr": other_lr, "weight_decay": weight_decay},
        {"name": "other_no_decay", "params": buckets["other_no_decay"], "lr": other_lr, "weight_decay": 0.0},
        {"name": "backbone", "params": buckets["backbone"], "lr": backbone_lr, "weight_decay": weight_decay},
        {"name": "backbone_no_decay", "params": buckets["backbone_no_decay"], "lr": backbone_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
