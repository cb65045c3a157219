"""Cached image features of a native VLM: the frozen vision tower and projector run once per image, then their
output is read from a feature cache (``--cache-features``).

Every supported family's ``get_image_features`` returns, as ``pooler_output``, one (tokens, width) tensor per unit
(an image: LLaVA, PaliGemma, Qwen2-VL, LLaVA-NeXT's tiles; an example's crops: Idefics3 / SmolVLM), which its forward
concatenates and merges into the placeholders. ``cache_image_features`` replaces that method on the model: each unit
is keyed by the SHA-256 of the pixels the processor made of it (its resolution, crops and normalisation included)
and looked up in ``store``; when every unit of a call is there, nothing of the tower runs; otherwise the model's own
method runs on the call and the new units are written (each unit stored whole: variable sizes, e.g. Qwen2-VL's
dynamic resolution, are kept per unit). The cache directory itself is keyed by the VLM (see ``vlm_signature``).

With ``projector`` (``--train-projector``: the VLM's own projector is trained) the tower's output before the
projector is cached instead (the projector's input, per unit) and the projector runs on it at every call; a family
whose projector input does not split per unit (``PRE_PROJECTOR`` lists those that do) is not cached then.

Florence-2 and BLIP-2 (its Q-Former's queries, projected) give one row of one tensor an image (``STACKED``), and
BLIP-2's forward reads that output's ``vision_outputs`` and ``qformer_outputs`` too (None when read: ``OUTPUT_TYPES``).

``store`` is any object with ``__contains__(key)``, ``get([key]) -> (1, tokens, width)`` and
``add_shard(keys, features)``: ``data.feature_cache.FeatureCache``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.blip_2.modeling_blip_2 import BaseModelOutputWithVisionQformerOutputs
from transformers.vision_utils import get_vision_window_index

from ..errors import OutputError
from ..methods.native import language_model
from ..methods.native_compile import image_model
from .native_tiles import pack, tile_units, tiled

logger = logging.getLogger(__name__)
# pooler_output: one (images, tokens, width) tensor, not a list
STACKED = ("paligemma", "vipllava", "florence2", "blip-2")
# families whose projector takes the tower's output unit by unit (rows of images, crops or patches) and whose
# get_image_features does nothing after it but split (Qwen2.5-VL's merger input is in window order, each image's
# windows its own: stored in raster order, ``raster_order``, its merger's output needs no reordering then);
# LLaVA-NeXT / OneVision: an image's tiles, packed by ``native_tiles.pack``; BLIP-2's projector takes its Q-Former's
# queries, one row an image; Florence-2's two (``projector_module``) the tower's pooled tokens after their position
# embeddings
PRE_PROJECTOR = ("llava", "vipllava", "paligemma", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "llava_next",
                 "llava_onevision", "florence2", "blip-2")
# the output a family's forward reads more than pooler_output of (BLIP-2: its tower's and Q-Former's, None here)
OUTPUT_TYPES = {"blip-2": BaseModelOutputWithVisionQformerOutputs}


def unit_inputs(pixel_values: torch.Tensor, kwargs: dict) -> list[tuple[torch.Tensor, ...]] | None:
    """The inputs of each unit of ``pooler_output`` in one call, or None for a layout not known here."""
    grid = kwargs.get("image_grid_thw")
    if grid is not None:  # Qwen2-VL: the patches of all images in one 2-D tensor, split by each image's grid
        sizes = grid.prod(-1).tolist()
        return [(patches, g) for patches, g in zip(pixel_values.split(sizes), grid)]
    if kwargs.get("image_sizes") is not None:
        return None  # tiles: LLaVA-NeXT's and OneVision's are ``native_tiles.tile_units``; others not cached
    if pixel_values.dim() == 4:  # one image per row
        return [(image,) for image in pixel_values]
    if pixel_values.dim() == 5:  # Idefics3 / SmolVLM: an example's crops, padded with all-zero crops
        masks = kwargs.get("pixel_attention_mask")
        units = []
        for i, crops in enumerate(pixel_values):
            real = (crops != 0).flatten(1).any(1)
            units.append((crops[real],) + (() if masks is None else (masks[i][real],)))
        return units
    return None


def unit_key(tensors: tuple[torch.Tensor, ...]) -> str:
    """The SHA-256 of a unit's pixels (and grid, mask): shapes, dtype and bytes."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class CachedImageFeatures:
    """The replacement of ``get_image_features``: units read from ``store``, or computed and written there.
    ``hits`` / ``misses`` count units."""

    def __init__(self, compute, store, stacked: bool = False, projector: nn.Module | None = None,
                 output_type: type = BaseModelOutputWithPooling, reorder=None):
        self.compute, self.store, self.stacked = compute, store, stacked  # stacked: pooler_output one tensor
        self.projector = projector  # set: its input is cached, and it runs on every call
        self.output_type = output_type  # of the features read (``methods.native_compile`` hands them on in one)
        self.reorder = reorder  # (a unit's projector input, its inputs) -> that input as cached, if not as captured
        self.signature = self.__signature__ = inspect.signature(compute)  # generate reads which inputs it takes
        self.hits = self.misses = 0
        self.unwritable: str | None = None  # why the store takes no more writes (``_write``)
        self.report = logger.warning  # how that is said (a run sets its own)
        self.owner = getattr(compute, "__self__", None)  # the model: LLaVA-NeXT's tiles are read with its config

    def units(self, pixel_values, named: dict) -> list[tuple[torch.Tensor, ...]] | None:
        """The call's units (``unit_inputs``; ``native_tiles.tile_units`` for a tiling family)."""
        if not isinstance(pixel_values, torch.Tensor):
            return None
        return tile_units(self.owner, pixel_values, named) if tiled(self.owner) else unit_inputs(pixel_values, named)

    def named(self, args, kwargs) -> dict:
        """The call's arguments by name (Qwen2-VL passes its grid by position)."""
        try:
            bound = self.signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            return {}
        extra = next((bound.pop(p.name) for p in self.signature.parameters.values()
                      if p.kind is p.VAR_KEYWORD and p.name in bound), {})
        return {**bound, **extra}

    def __call__(self, *args, **kwargs):
        named = self.named(args, kwargs)
        pixel_values = named.pop("pixel_values", None)
        units = self.units(pixel_values, named)
        if not units:
            return self.compute(*args, **kwargs)
        keys = [unit_key(u) for u in units]
        if all(key in self.store for key in keys):
            self.hits += len(keys)
            features = [self.store.get([key])[0].to(pixel_values.device) for key in keys]
            if self.projector is not None:
                crops = [None if pixel_values.dim() == 4 else len(u[0]) for u in units]  # None: one image a unit
                features = [self.project(f, n) for f, n in zip(features, crops)]
                features = pack(self.owner, features, units, named) if tiled(self.owner) else features
            return image_output(torch.stack(features) if self.stacked else features, self.output_type)
        if self.projector is None:
            out = self.compute(*args, **kwargs)
            pieces = list(out.pooler_output)
        else:
            out, pieces = self.compute_capturing_projector_input(args, kwargs, units, pixel_values.dim() == 4)
        self.stacked = isinstance(out.pooler_output, torch.Tensor)
        if len(pieces) == len(keys):
            self.misses += len(keys)
            self._write([(k, p) for k, p in zip(keys, pieces) if k not in self.store])
        return out

    def project(self, tower_output: torch.Tensor, rows: int | None) -> torch.Tensor:
        """One unit's features for the language model from its cached tower output (an image's tokens; ``rows``
        patches; or ``rows`` crops' tokens stored flat): (tokens, width)."""
        if rows and len(tower_output) != rows and len(tower_output) % rows == 0:  # crops: the projector takes 3-D
            tower_output = tower_output.unflatten(0, (rows, -1))
        projected = self.projector(tower_output.to(next(self.projector.parameters()).dtype))
        return projected.reshape(-1, projected.shape[-1])

    def compute_capturing_projector_input(self, args, kwargs, units, one_per_row: bool):
        """The model's own output, and the projector's input of that call split per unit (images, an example's crops,
        an image's patches)."""
        captured, first = [], self.projector[0] if isinstance(self.projector, nn.Sequential) else self.projector
        handle = first.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
        try:
            out = self.compute(*args, **kwargs)
        finally:
            handle.remove()
        if len(captured) != 1:
            return out, []
        sizes = [1 if one_per_row else len(unit[0]) for unit in units]
        if captured[0].shape[0] != sum(sizes):
            return out, []
        pieces = [p.squeeze(0) if one_per_row else p.flatten(0, -2) for p in captured[0].split(sizes)]  # 2-D
        return out, pieces if self.reorder is None else [self.reorder(p, u) for p, u in zip(pieces, units)]

    def _write(self, new: list[tuple[str, torch.Tensor]]) -> None:
        """New units into the store, those of one shape together (one shard each). A store that cannot take them (a
        full disk, a directory no longer writable) is written no more: ``report`` says so once and the features of
        images not cached yet are computed at every call; the run goes on."""
        if self.unwritable is not None:
            return
        by_shape: dict[tuple, dict[str, torch.Tensor]] = {}
        for key, piece in new:
            by_shape.setdefault(tuple(piece.shape), {})[key] = piece.detach().float().cpu()
        for group in by_shape.values():
            try:
                self.store.add_shard(list(group), torch.stack(list(group.values())))
            except OutputError as err:
                self.unwritable = str(err)
                self.report(f"feature cache: {err}; writing no more there: images not cached yet have their features "
                            "computed at every step, and the run goes on")
                return


def raster_order(merger_input: torch.Tensor, unit: tuple, vision: nn.Module) -> torch.Tensor:
    """Qwen2.5-VL: one image's merger input (``unit``: its patches and grid), whose merged tokens (groups of
    ``spatial_merge_size ** 2`` rows) the tower put in the order of its attention windows, in raster order: the
    merger works token by token, so its output on this is the image's features as the model gives them."""
    window, _ = get_vision_window_index(unit[1][None], spatial_merge_size=vision.spatial_merge_size,
                                        window_size=vision.window_size, patch_size=vision.patch_size)
    tokens = merger_input.unflatten(0, (len(window), -1))
    return tokens[window.argsort().to(tokens.device)].flatten(0, 1)


def image_output(features: list[torch.Tensor] | torch.Tensor, output_type: type = BaseModelOutputWithPooling):
    return output_type(pooler_output=features)


def projector_module(vlm: nn.Module, projectors: tuple[str, ...]) -> nn.Module | None:
    """The module (name ending in one of ``projectors``) whose input a pre-projector cache holds, or the modules, one
    for each of ``projectors``, applied in that order (Florence-2's ``image_projection`` then ``image_proj_norm``) as
    one ``nn.Sequential``; None for a family where that input does not split per unit (``PRE_PROJECTOR``) or with
    other modules of those names."""
    if vlm.config.model_type not in PRE_PROJECTOR:
        return None
    found = [[module for name, module in vlm.named_modules() if name.endswith(end)] for end in projectors]
    if any(len(modules) != 1 for modules in found):
        return None
    return found[0][0] if len(found) == 1 else nn.Sequential(*(modules[0] for modules in found))


def cache_image_features(vlm: nn.Module, store, projector: nn.Module | None = None) -> CachedImageFeatures:
    """Read ``vlm``'s image features from ``store`` from now on (see the module's docstring); the hook (its hit and
    miss counts). With ``projector`` (``projector_module``) its input is cached and it runs on every call."""
    target = image_model(vlm)
    compute = target.get_image_features
    model_type = vlm.config.model_type
    windowed = projector is not None and model_type == "qwen2_5_vl"
    hook = CachedImageFeatures(getattr(compute, "compute", compute), store, model_type in STACKED, projector,
                               OUTPUT_TYPES.get(model_type, BaseModelOutputWithPooling),
                               functools.partial(raster_order, vision=target.visual) if windowed else None)
    target.get_image_features = hook
    return hook


def vlm_signature(vlm: nn.Module, name: str, projector: nn.Module | None = None) -> dict[str, Any]:
    """What makes two native feature caches interchangeable: the VLM's name, its configuration, a fingerprint of
    the weights that produce the features (everything but the language model, and but ``projector`` when its input
    is what is cached), and which of the two is cached (``features``: projected, or the tower's ``pre-projector``
    output, of the projector's input width)."""
    lm = {id(p) for p in language_model(vlm).parameters()}
    lm |= {id(p) for p in projector.parameters()} if projector is not None else set()
    digest = hashlib.sha256()
    for pname, param in vlm.named_parameters():
        if id(param) not in lm:
            flat = param.detach().float().flatten()
            digest.update(f"{pname}{tuple(param.shape)}{flat[:64].tolist()}{float(flat.double().sum())}".encode())
    config = json.dumps(vlm.config.to_dict(), sort_keys=True, default=str)
    width = vlm.get_input_embeddings().weight.shape[1]
    signature = {"encoder": f"native:{name}", "weights": digest.hexdigest()[:16],
                 "config": hashlib.sha256(config.encode()).hexdigest()[:16], "image_size": "processor",
                 "num_tokens": 0, "feature_dim": width}
    if projector is not None:  # a projected cache keeps its old signature (existing caches stay valid)
        signature.update(features="pre-projector", feature_dim=0)  # 0: not recorded (the tower's width)
    return signature
