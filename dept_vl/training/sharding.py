"""A run at size: gradient checkpointing (``--gradient-checkpointing``) and FSDP2 sharding of a native VLM's frozen
language model under ``accelerate launch --use_fsdp --fsdp_version 2``.

accelerate 1.16 shards through FSDP2 on GPUs; on the CPU (``ACCELERATE_USE_CPU=1``) it quietly runs plain data
parallel instead (``DistributedType.MULTI_CPU``, every weight on every process) while ``ACCELERATE_USE_FSDP=true``
stays set. There dept-vl applies ``torch.distributed.fsdp.fully_shard`` itself (gloo) to each layer of the frozen
language model, so each process holds 1/N of those weights between uses:

- the layers are gathered for their forward (and again for the backward pass), then freed (the language model is
  their one FSDP root, its input embeddings left whole);
- the trainable weights (the input method, a trained projector) stay whole on every process; their gradients are
  averaged across processes as they are accumulated (as DDP would), so every process takes the same step and the
  checkpoint is the same adapter;
- for generation (validation, the test split: every process a different number of batches and tokens) the layers
  are gathered whole once, when the model goes to eval mode, and sharded again when it goes back to training.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from ..models.checkpointing import enable_gradient_checkpointing
from .native_cache import cache_native_features


def fsdp_requested(accelerator) -> bool:
    """``accelerate launch --use_fsdp`` on several processes where accelerate itself does not shard (the CPU)."""
    from accelerate.utils import DistributedType

    return (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
            and accelerator.num_processes > 1 and accelerator.distributed_type == DistributedType.MULTI_CPU)


def prepare_at_scale(recipe, model: nn.Module, accelerator, say) -> bool:
    """A native VLM's feature cache (--cache-features); gradient checkpointing when asked; FSDP2 sharding when
    launched for it on the CPU. Whether sharded (then the model must not go through ``accelerator.prepare``: see
    ``prepare_model``)."""
    cache_native_features(recipe, model, say)
    if recipe.train.gradient_checkpointing:
        layers = enable_gradient_checkpointing(model)
        say(f"gradient checkpointing: {layers} layers of the language model recompute their activations")
    if not fsdp_requested(accelerator):
        return False
    if not model.shards_language_model:
        raise ConfigError("FSDP sharding on the CPU is for a native VLM (--vlm); the assembled models train with "
                          "plain data parallel (accelerate launch --multi_gpu)")
    layers = shard_language_model(model)
    say(f"FSDP2: {layers} layers of the frozen language model sharded across {accelerator.num_processes} processes")
    return True


def prepare_model(accelerator, model: nn.Module, optimizer, sharded: bool):
    """``(model, optimizer)`` as the loop drives them: through ``accelerator.prepare``, or for a sharded model the
    model itself (its trainable gradients averaged by hooks) and the optimizer prepared alone."""
    if not sharded:
        return accelerator.prepare(model, optimizer)
    return model, accelerator.prepare(optimizer)


def shard_language_model(model: nn.Module) -> int:
    """``fully_shard`` on each frozen layer of ``model``'s language model; gradients of the trainable weights
    averaged across processes; the layers gathered whole in eval mode. The number of layers sharded."""
    from torch.distributed.fsdp import fully_shard

    lm = model.frozen_language_model
    layers = decoder_layers(lm)
    if any(p.requires_grad for p in lm.parameters()):
        raise ConfigError("FSDP sharding on the CPU shards frozen language-model layers only; --method lora / full "
                          "train them (use plain data parallel for those)")
    for layer in layers:
        fully_shard(layer)
    # the language model as the one root (a root keeps its weights gathered from forward to backward); its input
    # embeddings stay whole: the VLM embeds the text before it calls the language model
    fully_shard(lm, ignored_params=set(lm.get_input_embeddings().parameters()))
    for param in model.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(_average_gradient)
    _gather_in_eval_mode(model, [*layers, lm])
    return len(layers)


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a language model: the modules of the classes it says are never split across devices
    (``_no_split_modules``, e.g. ``LlamaDecoderLayer``), outermost first."""
    names = set(getattr(lm, "_no_split_modules", None) or ())
    layers = [m for m in lm.modules() if type(m).__name__ in names]
    layers = [m for m in layers if not any(m is not outer and any(m is x for x in outer.modules()) for outer in layers)]
    if not layers:
        raise ConfigError(f"FSDP: {type(lm).__name__} names no layers to shard (_no_split_modules)")
    return layers


def _average_gradient(param: torch.Tensor) -> None:
    """The accumulated gradient averaged across processes (what is already averaged stays as it is)."""
    dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
    param.grad.div_(dist.get_world_size())


def _gather_in_eval_mode(model: nn.Module, layers: list[nn.Module]) -> None:
    """``model.eval()`` gathers the sharded layers whole (generation then needs no collective per token, which
    processes with different numbers of batches could not match); ``model.train()`` shards them again. Every
    process switches modes at the same points of a run (validation, the test split)."""
    switch = model.train

    def train(mode: bool = True):
        for layer in layers:
            layer.set_reshard_after_forward(mode)
            if mode:
                layer.reshard()
            else:
                layer.unshard()
        return switch(mode)

    model.train = train
