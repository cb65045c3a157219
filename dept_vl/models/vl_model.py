"""The vision-language model: frozen vision encoder -> trainable projection -> [visual ; text] -> DePT
-> frozen text backbone.

``VisionLanguageModel.encoder_inputs`` is the ONE place where the input sequence is assembled;
``forward`` (loss) and ``generate`` (text) both go through it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError
from ..io import local_or_hub
from ..methods import build_input_method, get_method, position_ids_from_mask, resolved_settings
from .buckets import bucket_labels, bucket_text
from .config import ModelConfig
from .identity import fingerprint
from .interface import Member, VLModel
from .names import FEATURES
from .projection import VisualProjection
from .saved import MODEL_CONFIG_FILE, load_trainable, read_meta, save_trainable, saved_backbone, weights_file
from .text import TextBackbone
from .vision import VisionEncoder, create_vision_encoder

__all__ = ["MODEL_CONFIG_FILE", "VisionLanguageModel", "left_align"]


class VisionLanguageModel(VLModel):
    """DePT on a frozen vision-language model. Trainable: ``dept`` (P, A, B) and ``projection``
    (``config.method`` picks another registered method instead: prompt tuning, ADePT, LoRA, full fine-tuning; see
    ``dept_vl/methods``). ``dept`` holds the input method's module, whichever it is (None for backbone methods).

    Images arrive as ``pixel_values`` (B, 3, H, W) / (B, images, 3, H, W) or as precomputed
    ``image_features`` (B, tokens, dim) / (B, images, tokens, dim); visual tokens come first so that
    each row of A always addresses the same kind of position.
    """

    def __init__(self, config: ModelConfig, vision: VisionEncoder | None = None, text: TextBackbone | None = None):
        super().__init__()
        self.config = config = copy.deepcopy(config)
        v = config.vision
        if vision is None and v.encoder != FEATURES:
            vision = create_vision_encoder(v)
        self.vision = vision
        self.text = text or TextBackbone.from_config(config.text)
        feature_dim = vision.out_dim if vision is not None else v.feature_dim
        self.tokens_per_image = vision.num_tokens() if vision is not None else v.num_tokens
        self.projection = VisualProjection(feature_dim, self.text.hidden_size, config.max_images)
        self.fast_path = None  # the FastPath applied to it (dept_vl.fast, --compile), which sets the next two:
        self.bucket_multiple: int | None = None  # lengths are padded to buckets of this
        self.generation_options: dict = {}  # greedy generation's options (a static, compiled KV cache)
        self.dept = self._apply_method()
        longest = self.tokens_per_image * config.max_images + config.text.max_length
        if longest > config.dept.max_length and not config.dept.truncate:
            raise ConfigError(
                f"{config.max_images} image(s) x {self.tokens_per_image} visual tokens + {config.text.max_length} "
                f"text tokens = {longest} exceeds dept.max_length {config.dept.max_length}; raise dept.max_length, "
                "pool the visual tokens (vision.pool_tokens) or shorten text.max_length"
            )

    backbone_prefix = "text."  # parameters under this name are the text backbone's (param_groups)

    @property
    def reads_images(self) -> bool:
        """It takes images (it has a vision encoder), not only precomputed features."""
        return self.vision is not None

    def _apply_method(self):
        """Give the model its trainable parts: an input method's module (returned; it has a prompt per task of a
        multi-task model), or a backbone method's change to the text backbone (None returned)."""
        method, config = get_method(self.config.method), self.config
        if method.section not in (None, "dept"):  # recorded as used, so that a saved run names its settings
            config.sections[method.section] = config.settings_for()
        if method.adapter is None:
            self.text.model = method.backbone(self.text.model, config.settings_for())
            self.text.frozen = method.adapter_only  # a whole backbone in training (full) trains with its dropout
            return None
        dept = dataclasses.replace(config.dept, num_prompts=config.num_prompts)
        adapter = build_input_method(config.method, dept, config.settings_for(), self.text.embeddings,
                                     self.text.tokenizer)
        config.record_method(*resolved_settings(adapter))
        return adapter

    # ---- inputs ----------------------------------------------------------------------------------
    def visual_tokens(self, pixel_values=None, image_features=None) -> torch.Tensor:
        """(B, images * tokens, d): frozen encoder (unless features are given), then the projection."""
        if image_features is None:
            if pixel_values is None:
                raise InputError("give pixel_values or image_features")
            if self.vision is None:
                raise InputError("this model was built for precomputed image_features (vision.encoder='features')")
            pixels = pixel_values if pixel_values.dim() == 5 else pixel_values.unsqueeze(1)
            feats = self.vision(pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2])
        else:
            feats = image_features if image_features.dim() == 4 else image_features.unsqueeze(1)
            if feats.shape[-1] != self.projection.in_dim:
                raise InputError(f"image_features have width {feats.shape[-1]}, the projection expects "
                                 f"{self.projection.in_dim}")
        return self.projection(feats.to(self.projection.linear.weight.device))

    def encoder_inputs(self, input_ids, attention_mask, pixel_values=None, image_features=None, prompt_ids=None):
        """THE assembly: ``DePT([visual tokens ; text embeddings])``, returning (embeds, mask).

        For decoder-only backbones the sequence is left-aligned (pads first) and DePT is applied by
        each sequence's real positions, so row i of A always meets the i-th real token. ``prompt_ids`` (one per
        example, ``prompt_ids_for``) picks each example's prompt in a model with a prompt per task.
        """
        text = self.text.embed(input_ids)
        visual = self.visual_tokens(pixel_values, image_features).to(text.dtype)
        embeds = torch.cat([visual, text], dim=1)
        mask = torch.cat([attention_mask.new_ones(visual.shape[:2]), attention_mask], dim=1)
        position_ids = None
        if self.text.kind == "causal":
            embeds, mask = left_align(embeds, mask)
            position_ids = position_ids_from_mask(mask)
        if self.dept is None:  # lora / full
            return embeds, mask
        return self.dept(embeds, mask, position_ids=position_ids, prompt_ids=prompt_ids)

    # ---- training and generation -----------------------------------------------------------------
    def forward(self, input_ids, attention_mask, labels, pixel_values=None, image_features=None, prompt_ids=None):
        """Hugging Face output whose ``.loss`` is the mean cross-entropy on ``labels`` (-100 = pad)."""
        embeds, mask = self.encoder_inputs(input_ids, attention_mask, pixel_values, image_features, prompt_ids)
        if self.text.kind == "seq2seq":
            return self.text.loss(embeds, mask, labels)
        target = labels != -100
        embeds = torch.cat([embeds, self.text.embed(labels.clamp(min=0)).to(embeds.dtype)], dim=1)
        mask = torch.cat([mask, target.to(mask.dtype)], dim=1)
        full_labels = torch.cat([labels.new_full(mask[:, : -labels.shape[1]].shape, -100), labels], dim=1)
        return self.text.loss(embeds, mask, full_labels, position_ids=position_ids_from_mask(mask),
                              targets_at_end=labels.shape[1])

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, pixel_values=None, image_features=None, prompt_ids=None,
                 max_new_tokens: int | None = None, num_beams: int = 1, **settings) -> list[str]:
        """Greedy (``num_beams=1``) or beam-search answers as text, with the KV cache; ``settings``: more
        ``generate`` options (a task's own, e.g. ``no_repeat_ngram_size`` for captions)."""
        embeds, mask = self.encoder_inputs(input_ids, attention_mask, pixel_values, image_features, prompt_ids)
        options = {**(self.generation_options if num_beams == 1 else {}), **settings}
        ids = self.text.generate(embeds, mask, max_new_tokens=max_new_tokens or self.config.text.max_target_length,
                                 num_beams=num_beams, **options)
        return self.text.decode(ids)

    # ---- convenience: raw images and strings in -------------------------------------------------
    def prepare(self, texts: Sequence[str], images=None, image_features=None, targets: Sequence[str] | None = None,
                device=None, task=None, contexts: Sequence | None = None):
        """Tokenise ``texts`` (and ``targets``), preprocess ``images`` (PIL images, paths or image bytes; a list per
        example for several images) into the keyword arguments of ``forward`` / ``generate``, on ``device``
        (default: the model's). ``task`` (a name, or one per example) picks the prompt of a multi-task model;
        ``contexts``: each example's earlier turns, (role, text) pairs, written before its text."""
        device = self.text.device if device is None else device
        contexts = contexts or [()] * len(texts)
        batch = self.text.tokenize([self.render_prompt(t, 0, c) for t, c in zip(texts, contexts)],
                                   self.config.text.max_length, device=device)
        if self.bucket_multiple:
            batch = bucket_text(batch, self.bucket_multiple, self.config.text.max_length,
                                self.text.tokenizer.pad_token_id)
        prompt_ids = self.prompt_ids_for(task, len(texts), device)
        if prompt_ids is not None:
            batch["prompt_ids"] = prompt_ids
        if images is not None:
            if self.vision is None:
                raise InputError("this model takes precomputed image_features, not images")
            per_example = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
            if len({len(ims) for ims in per_example}) != 1:
                raise InputError("every example needs the same number of images")
            flat = self.vision.preprocess([im for ims in per_example for im in ims])
            batch["pixel_values"] = flat.unflatten(0, (len(per_example), len(per_example[0]))).to(device)
        elif image_features is not None:
            batch["image_features"] = image_features.to(device)
        else:
            raise InputError("give images or image_features")
        if targets is not None:
            batch["labels"] = self.prepare_targets(targets, device)
        return batch

    def prepare_targets(self, targets: Sequence[str], device=None) -> torch.Tensor:
        """The ``labels`` of ``targets``: token ids, -100 where padded (decoder-only: EOS appended)."""
        enc = self.text.tokenize(list(targets), self.config.text.max_target_length,
                                 add_eos=self.text.kind == "causal", device=self.text.device if device is None else device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        if self.bucket_multiple:
            labels = bucket_labels(labels, self.bucket_multiple, self.config.text.max_target_length)
        return labels

    # ---- what it is, and runs that share its frozen parts (``VLModel``) ----------------------------------------
    def render_prompt(self, text: str, images: int, context=()) -> str:
        """The text its tokenizer reads for a question (the template, after the conversation's earlier turns)."""
        return self.config.text.prompt_template.replace("{text}", with_context(text, context))

    def backbone_names(self) -> tuple[str, str]:
        return self.config.vision.encoder, self.config.text.backbone

    def backbone_identity(self, config: ModelConfig | None = None) -> dict:
        """The frozen parts ``config``'s model (default: this one) needs: its text backbone and vision encoder."""
        config = config or self.config
        if config.vlm is not None:
            return {"kind": "a native VLM"}
        if config.vision.encoder == FEATURES:
            vision = {"encoder": FEATURES}
        elif config.vision == self.config.vision and self.vision is not None:
            vision = self.vision.identity()
        else:
            vision = create_vision_encoder(config.vision).identity()
        return {"kind": "an assembled model", "text": fingerprint(config.text.backbone, "text backbone"), "vision": vision,
                "dtype": config.text.dtype}

    @property
    def frozen_language_model(self) -> nn.Module:
        return self.text.model

    def on_shared_backbone(self, config: ModelConfig) -> "VisionLanguageModel":
        return VisionLanguageModel(config, vision=self.vision, text=self.text)

    @torch.no_grad()
    def generate_mixed(self, members: list[Member], max_new_tokens: int | None = None, **options) -> list[str]:
        """Every member's questions through its own input sequence (prompt, rows of A @ B, projection, template),
        their images through the shared encoder in one pass, and all of them through the backbone together."""
        images = [image for m in members for question in m.images for image in question]
        features = None
        if self.vision is not None and images:
            encoded = self.vision(self.vision.preprocess(images).to(self.text.device))
            features = iter(encoded.split([len(question) for m in members for question in m.images]))
        sequences = []
        for m in members:
            if features is not None:
                batch = m.model.prepare(m.texts, image_features=torch.stack([next(features) for _ in m.texts]),
                                        task=m.task, contexts=m.contexts)
            else:
                batch = m.model.prepare(m.texts, m.images, task=m.task, contexts=m.contexts)
            keys = ("input_ids", "attention_mask", "pixel_values", "image_features", "prompt_ids")
            sequences.append(m.model.encoder_inputs(**{k: batch[k] for k in keys if k in batch}))
        length, left = max(e.shape[1] for e, _ in sequences), self.text.kind == "causal"
        padded = [pad_to(e, m, length, left) for e, m in sequences]
        ids = self.text.generate(torch.cat([e for e, _ in padded]), torch.cat([m for _, m in padded]),
                                 max_new_tokens=max_new_tokens or self.config.text.max_target_length, **options)
        return self.text.decode(ids)

    # ---- checkpoints: trainable weights only -------------------------------------------------------
    @property
    def weights_file(self) -> str:
        return weights_file(self.config.method)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the trainable weights (``weights_file``: the method's + projection) then ``dept_vl_config.json``
        (``models/saved.py``: a local backbone is recorded relative to ``directory`` too)."""
        save_trainable(self, directory, {"hidden_size": self.text.hidden_size, "projection": self.projection.shape_dict(),
                                         "tokens_per_image": self.tokens_per_image}, local=self.config.text.backbone)

    def load_trainable(self, directory: str | Path) -> None:
        """Put the trainable weights saved in ``directory`` (``save_pretrained``, or a training checkpoint) into
        this model, naming any weight that is missing or does not fit; the frozen parts stay as they are."""
        load_trainable(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, text: TextBackbone | None = None,
                        vision: VisionEncoder | None = None, backbone: str | None = None) -> "VisionLanguageModel":
        """Rebuild the model from the saved config (loading the named backbones, in the saved ``text.dtype``) and
        restore the trainable weights. ``directory`` may be a Hugging Face Hub repository (``user/repo``);
        ``backbone`` / ``text`` / ``vision`` override the saved backbones."""
        directory = local_or_hub(directory)
        meta = read_meta(directory)
        config = ModelConfig.from_dict(meta["model"])
        relative = meta.get("backbone_relative", meta.get("text_backbone_relative"))  # the latter: dept-vl 0.1
        config.text.backbone = backbone or saved_backbone(config.text.backbone, relative, directory)
        text = text or TextBackbone.from_config(config.text)
        if text.hidden_size != meta["hidden_size"]:
            raise CheckpointError(f"checkpoint {directory} was trained for text width {meta['hidden_size']}, "
                                  f"but backbone {text.name_or_path!r} has width {text.hidden_size}")
        model = cls(config, vision=vision, text=text)
        model.load_trainable(directory)
        return model


def with_context(text: str, context) -> str:
    """An example's text after its earlier turns: ``user: ... assistant: ... user: <text>``."""
    if not context:
        return text
    return " ".join(f"{role}: {turn}" for role, turn in context) + f" user: {text}"


def pad_to(embeds: torch.Tensor, mask: torch.Tensor, length: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences padded to ``length`` (on the left for a decoder-only backbone, whose inputs are left-aligned)."""
    extra = length - embeds.shape[1]
    if extra == 0:
        return embeds, mask
    pads = (embeds.new_zeros(embeds.shape[0], extra, embeds.shape[2]), mask.new_zeros(mask.shape[0], extra))
    if left:
        return torch.cat([pads[0], embeds], 1), torch.cat([pads[1], mask], 1)
    return torch.cat([embeds, pads[0]], 1), torch.cat([mask, pads[1]], 1)


def left_align(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's padding to the front (right-padded -> left-padded), keeping token order."""
    n = mask.shape[1]
    shift = n - mask.long().sum(dim=1, keepdim=True)  # pads per row
    index = (torch.arange(n, device=mask.device).unsqueeze(0) - shift) % n
    return embeds.gather(1, index.unsqueeze(-1).expand_as(embeds)), mask.gather(1, index)
