"""LLaVA-NeXT and LLaVA-OneVision in the native feature cache (``models.native_features``): their images are tiled.

The processor makes each image a base tile plus the tiles of its best grid (``image_grid_pinpoints``), padded with
unused tiles to the batch's largest count: ``pixel_values`` (images, tiles, channels, height, width) and
``image_sizes`` (images, 2). ``get_image_features`` keeps each image's first ``tiles`` (their number computed from its
size; one for an image of an example with several images under OneVision's ``batch_num_images``), runs the tower
and projector on all of them together, splits the projected tiles per image and packs each image (its base tile's
tokens, then its grid's tokens unpadded to the image's aspect ratio, an ``image_newline`` token ending every row):
``pooler_output`` holds one (tokens, width) tensor per image. A unit of the cache is an image's real tiles and its
size (both hashed); nothing else in the forward reads ``image_sizes`` once the features are given.

Under ``--train-projector`` the tower's output of an image's tiles is cached (the projector's input splits per image
by tile counts) and ``pack`` reproduces what follows the projector with the model's own ``pack_image_features``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

TILED = ("llava_next", "llava_onevision")
PACKING_OPTIONS = ("vision_feature_select_strategy", "vision_aspect_ratio")  # pack_image_features' settings


def tiled(model: nn.Module | None) -> bool:
    """Whether ``model`` (the module whose ``get_image_features`` is cached) tiles its images."""
    return getattr(getattr(model, "config", None), "model_type", None) in TILED


def tile_counts(config, image_sizes: torch.Tensor, batch_num_images=None) -> list[int]:
    """How many of each image's tiles ``get_image_features`` uses (the rest is padding)."""
    patched = ([True] * len(image_sizes) if batch_num_images is None
               else [int(n) == 1 for n in batch_num_images for _ in range(int(n))])
    return [image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size)
            if patch else 1 for size, patch in zip(image_sizes, patched)]


def tile_units(model: nn.Module, pixel_values: torch.Tensor, named: dict) -> list[tuple[torch.Tensor, ...]] | None:
    """Each image's unit: (its real tiles, its size); None for a layout not known here (tiles already flattened
    into one 4-D tensor, or no sizes)."""
    sizes = named.get("image_sizes")
    if pixel_values.dim() != 5 or sizes is None or len(sizes) != len(pixel_values):
        return None
    counts = tile_counts(model.config, sizes, named.get("batch_num_images"))
    return [(tiles[:count], size) for tiles, count, size in zip(pixel_values, counts, sizes)]


def pack(model: nn.Module, projected: list[torch.Tensor], units: list[tuple], named: dict) -> list[torch.Tensor]:
    """Each image's features for the language model from its projected tiles (tiles x tokens, width), packed as
    ``get_image_features`` packs them (the model's own ``pack_image_features``)."""
    tiles = [p.reshape(len(unit[0]), -1, p.shape[-1]) for p, unit in zip(projected, units)]
    taken = inspect.signature(model.pack_image_features).parameters
    options = {name: named.get(name) or getattr(model.config, name) for name in PACKING_OPTIONS if name in taken}
    sizes = torch.stack([unit[1] for unit in units])
    packed, _ = model.pack_image_features(tiles, sizes, image_newline=model.image_newline, **options)
    return packed
