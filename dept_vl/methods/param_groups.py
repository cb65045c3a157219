"""Optimizer parameter groups: one learning rate for the prompt, one for the input update (DePT's A and B,
ADePT's network), one for the projection, one for backbone weights. Which tensor is which is the method's rule
(``Method.param_group``, registered with it)."""

from __future__ import annotations

from torch import nn

from .._dataclass import check_number
from .registry import GROUPS, Method, get_method


def param_groups(
    model: nn.Module,
    prompt_lr: float,
    lowrank_lr: float,
    weight_decay: float = 0.0,
    other_lr: float | None = None,
    backbone_lr: float | None = None,
    method: str | Method | None = None,
) -> list[dict]:
    """Split the trainable parameters of ``model`` into groups for ``torch.optim.AdamW``.

    - ``prompt``: the prompts P, at ``prompt_lr``, no weight decay;
    - ``lowrank``: the input update (DePT's A and B, ADePT's feed-forward network), at ``lowrank_lr``;
    - ``other``: every other trainable parameter (e.g. the visual projection), at ``other_lr`` (default
      ``lowrank_lr``);
    - ``backbone``: trainable weights of the backbone (LoRA or full fine-tuning), at ``backbone_lr`` (default
      ``other_lr``).
    Biases and norms (tensors of one dimension) get no weight decay (a ``*_no_decay`` group); empty groups are
    dropped; frozen parameters are never included. ``model`` may be a PEFT model of ``DePTPeftConfig`` /
    ``ADePTPeftConfig`` (its active adapter's method). ``method`` (default: the model's own, else ``dept``) says which
    of its tensors are the prompt and the update; the model's ``backbone_prefix`` (default ``text.``) which are the
    backbone's (but those under its ``projector_prefixes``: a native VLM's projector is ``other``).
    """
    for name, lr in (("prompt_lr", prompt_lr), ("lowrank_lr", lowrank_lr), ("other_lr", other_lr),
                     ("backbone_lr", backbone_lr)):
        if lr is not None:
            check_number(name, lr, above=0)
    other_lr = lowrank_lr if other_lr is None else other_lr
    rates = {"prompt": prompt_lr, "lowrank": lowrank_lr, "other": other_lr,
             "backbone": other_lr if backbone_lr is None else backbone_lr}
    rule = method if isinstance(method, Method) else get_method(method or getattr(model, "method_name", "dept"))
    prefix = getattr(model, "backbone_prefix", "text.")
    own = tuple(getattr(model, "projector_prefixes", ()))  # a native VLM's own projector, when it trains: "other"
    buckets: dict[tuple[str, bool], list] = {(group, decay): [] for group in GROUPS for decay in (True, False)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            group = rule.group_of(name, name.startswith(prefix) and not name.startswith(own))
            buckets[group, group != "prompt" and param.dim() >= 2].append(param)
    return [{"name": group if decay or group == "prompt" else f"{group}_no_decay", "params": params,
             "lr": rates[group], "weight_decay": weight_decay if decay else 0.0}
            for (group, decay), params in buckets.items() if params]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
