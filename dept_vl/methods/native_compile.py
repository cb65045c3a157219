"""``--compile`` on a native VLM (``NativeVLMWrapper.compile``): its training step traced by dynamo without graph
breaks where its family allows.

Two things in transformers' VLM forwards break the graph, and neither needs changing the model:

- output capturing (a vision tower asked for its hidden states, e.g. LLaVA's ``vision_feature_layer=-2``) installs
  its hooks lazily, under a ``threading.Lock`` that dynamo cannot enter: the hooks are installed before compiling
  (``install_output_capturing``);
- the image-placeholder count check (``get_placeholder_mask``) reads a tensor with ``.item()``: the compiled call
  runs under ``COMPILE_SETTINGS``, which put it in the graph (a runtime assert).

The feature cache (``--cache-features``) hashes pixels on the host: where the VLM reads its image features from one,
they are fetched eagerly before the compiled call and handed to it as ``mm_encoder_outputs`` (``features_first``; as
its pixel values to Florence-2, whose forward takes no ``mm_encoder_outputs``); under --train-projector the cache
gives the tower's output and the projector runs on it there, eagerly.
Qwen2-VL / Qwen2.5-VL build their 3-D M-RoPE positions from the values of ``input_ids``, ``mm_token_type_ids`` and
``image_grid_thw`` (a boolean index per row): the model's own ``compute_3d_position_ids`` runs eagerly before the
compiled call, on the sequence with the prompt's slots in, and its positions are handed in (``positions_first``).

What still breaks (dynamo's reasons in ``docs/scale.md``): Idefics3 / SmolVLM without the feature cache (their
tower drops the all-zero padding crops with a boolean index: a size that depends on the data), LLaVA-NeXT /
OneVision without it (their tile count is computed from ``image_sizes``' values) and Qwen2-VL / Qwen2.5-VL without
it (their tower's per-image attention, and Qwen2.5-VL's windows, are split by ``image_grid_thw``'s values).
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils.output_capturing import maybe_install_capturing_hooks

COMPILE_SETTINGS = {"capture_scalar_outputs": True}  # dynamo's: .item() traced into the graph, not a break


def _installed(module: nn.Module) -> bool:
    return bool(getattr(module, "_output_capturing_hooks_installed", False))


def install_output_capturing(module: nn.Module) -> None:
    """Install transformers' output-capturing hooks in ``module`` now, each model's once: a model whose own part
    (a tower run eagerly before) already has them is passed over, and its other parts get theirs."""
    if _installed(module):
        return
    inner = [m for m in module.modules() if isinstance(m, PreTrainedModel) and m is not module]
    if isinstance(module, PreTrainedModel) and not any(_installed(m) for m in inner):
        maybe_install_capturing_hooks(module)  # the model and every model inside it
        return
    for child in module.children():
        install_output_capturing(child)


def under_settings(call, settings: dict):
    """``call`` run (and so traced and compiled) under the dynamo ``settings``."""
    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        with torch._dynamo.config.patch(**settings):
            return call(*args, **kwargs)
    return wrapped


def image_model(vlm: nn.Module) -> nn.Module:
    """The module whose ``get_image_features`` ``vlm``'s forward calls (the base model inside a ``...ForConditional
    Generation``, if it has one)."""
    inner = getattr(vlm, "model", None)
    return inner if hasattr(inner, "get_image_features") else vlm


def cached_image_features(vlm: nn.Module):
    """The feature cache ``vlm`` reads its image features from (``models.native_features``), None if it has none."""
    compute = getattr(image_model(vlm), "get_image_features", None)
    return compute if getattr(compute, "store", None) is not None else None


def features_first(vlm: nn.Module, call):
    """``call`` (a compiled call of ``vlm``'s wrapper) given the image features read from ``vlm``'s feature cache
    eagerly, instead of the pixels, when it has one (as ``mm_encoder_outputs``, in the cache's output type: BLIP-2's
    forward reads more of it; or, to a forward that takes none, Florence-2's, as ``features_as_pixels``); else
    ``call`` as it is."""
    takes_features = "mm_encoder_outputs" in inspect.signature(vlm.forward).parameters

    @functools.wraps(call)
    def wrapped(*args, **inputs):
        cache = cached_image_features(vlm)
        if cache is None or inputs.get("pixel_values") is None:
            return call(*args, **inputs)
        taken = inspect.signature(cache).parameters
        features = cache(**{k: v for k, v in inputs.items() if k in taken}).pooler_output
        features = list(features) if isinstance(features, tuple) else features  # computed or read: one type, one graph
        if not takes_features:
            return features_as_pixels(vlm, call, args, {**inputs, "pixel_values": features})
        inputs = {k: v for k, v in inputs.items() if k != "pixel_values"}  # read or computed: one graph for both
        given = getattr(cache, "output_type", BaseModelOutputWithPooling)(pooler_output=features)
        return call(*args, **inputs, pixel_values=None, mm_encoder_outputs={"image": given})
    return wrapped


def positions_first(vlm: nn.Module, extend, call):
    """``call`` (a compiled call of ``vlm``'s wrapper) given, as ``slot_position_ids``, the positions ``vlm`` would
    compute from its inputs' values (Qwen2-VL's 3-D M-RoPE positions: ``compute_3d_position_ids``), computed eagerly
    on the sequence it will see (``extend``: the wrapper's, the prompt's slots in); else ``call`` as it is."""
    inner = getattr(vlm, "model", vlm)
    compute = getattr(inner, "compute_3d_position_ids", None)
    taken = set(inspect.signature(compute).parameters) - {"kwargs"} if compute is not None else set()

    @functools.wraps(call)
    def wrapped(*args, **inputs):
        if compute is None or args or inputs.get("input_ids") is None:
            return call(*args, **inputs)
        rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "labels", "prompt_ids")}
        ids, mask, _, extended = extend(inputs["input_ids"], inputs.get("attention_mask"), None, rest)
        given = {**dict.fromkeys(taken), **{k: v for k, v in extended.items() if k in taken}}  # no cache: prefill
        positions = compute(**{**given, "input_ids": ids, "attention_mask": mask})
        return call(*args, **inputs) if positions is None else call(*args, **inputs, slot_position_ids=positions)
    return wrapped


def given_features(pixel_values, **_):
    """A ``get_image_features`` handing back the features it is given as pixel values (``features_as_pixels``)."""
    return BaseModelOutputWithPooling(pooler_output=pixel_values)


def features_as_pixels(vlm: nn.Module, call, args, inputs: dict):
    """``call`` with the image features in ``inputs["pixel_values"]`` and ``vlm``'s ``get_image_features`` handing
    them back (``given_features``: the same function every call, so one graph) for that call only."""
    owner = image_model(vlm)
    own = owner.get_image_features
    owner.get_image_features = given_features
    try:
        return call(*args, **inputs)
    finally:
        owner.get_image_features = own
