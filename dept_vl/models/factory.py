"""``create_model`` / ``load_model``: the one factory of dept-vl's models, whichever the backbone family (timm
style): an assembled model (vision encoder -> projection -> text backbone, ``VisionLanguageModel``) or a native
Hugging Face VLM (``vlm: NAME``, ``NativeVisionLanguageModel``)."""

from __future__ import annotations

from pathlib import Path

from ..io import local_or_hub
from .config import ModelConfig
from .names import FEATURES
from .native_vlm import NativeVisionLanguageModel
from .saved import read_meta
from .vision import create_vision_encoder
from .vl_model import VisionLanguageModel


def create_model(config: ModelConfig, device=None, **parts):
    """A new model of ``config`` (``parts``: already built parts an assembled model may take: ``vision``, ``text``;
    ``device``: where an assembled model's frozen vision encoder runs, e.g. to encode images for its cache)."""
    if config.vlm is not None:
        return NativeVisionLanguageModel(config)
    if device is not None and "vision" not in parts and config.vision.encoder != FEATURES:
        parts["vision"] = create_vision_encoder(config.vision).to(device)
    return VisionLanguageModel(config, **parts)


def load_model(directory: str | Path, backbone: str | None = None):
    """A model saved with ``save_pretrained``, in a directory or a Hugging Face Hub repository (``user/repo``);
    ``backbone``: its backbone from here instead of the saved one."""
    directory = local_or_hub(directory)
    meta = read_meta(directory)
    native = isinstance(meta.get("model"), dict) and meta["model"].get("vlm") is not None
    cls = NativeVisionLanguageModel if native else VisionLanguageModel
    return cls.from_pretrained(directory, backbone=backbone)
