"""``create_model`` / ``load_model``: the one factory of dept-vl's models, whichever the backbone family (timm
style): an assembled model (vision encoder -> projection -> text backbone, ``VisionLanguageModel``) or a native
Hugging Face VLM (``vlm: NAME``, ``NativeVisionLanguageModel``)."""

from __future__ import annotations

from pathlib import Path

from ..io import local_or_hub
from .config import ModelConfig
from .native_vlm import NativeVisionLanguageModel
from .saved import read_meta
from .vl_model import VisionLanguageModel


def create_model(config: ModelConfig, **parts):
    """A new model of ``config`` (``parts``: already built parts an assembled model may take: ``vision``, ``text``)."""
    if config.vlm is not None:
        return NativeVisionLanguageModel(config)
    return VisionLanguageModel(config, **parts)


def load_model(directory: str | Path, backbone: str | None = None):
    """A model saved with ``save_pretrained``, in a directory or a Hugging Face Hub repository (``user/repo``);
    ``backbone``: its backbone from here instead of the saved one."""
    directory = local_or_hub(directory)
    meta = read_meta(directory)
    native = isinstance(meta.get("model"), dict) and meta["model"].get("vlm") is not None
    cls = NativeVisionLanguageModel if native else VisionLanguageModel
    return cls.from_pretrained(directory, backbone=backbone)
