"""The native-VLM backbone family: a Hugging Face VLM (LLaVA, Qwen2-VL, PaliGemma, Idefics3 / SmolVLM, Florence-2,
BLIP-2) with its own processor and chat template, frozen, and the method on its joint sequence after the image
merge (``methods.native``). ``dept-vl train --vlm NAME_OR_DIR`` trains it like the assembled models: the same
``prepare`` / ``forward`` / ``generate`` / ``save_pretrained`` as ``VisionLanguageModel``.

Inputs are written by the model's own processor: the question as the user's turn of its chat template (with one
image placeholder per image; ``{image}{text}`` when the processor has no template), the answer as the assistant's
turn. A decoder-only model learns on the answer's tokens only (the rest is -100); an encoder-decoder's answer is the
decoder's target. Left padding for decoder-only models, right padding for encoder-decoders.
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
from ..methods import build_input_method, get_method, resolved_settings, wrap_input_method
from ..methods.native import (FAMILIES, NativeVLMWrapper, StackedMethods, language_input, language_model,
                              native_family, unfreeze_projector)
from .buckets import bucket_labels, bucket_per_token
from .config import ModelConfig
from .identity import fingerprint
from .interface import Member, VLModel
from .native_features import CachedImageFeatures, cache_image_features, projector_module, vlm_signature
from .images import as_image
from .loading import pretrained_errors
from .saved import load_trainable, read_meta, save_trainable, saved_backbone
from .text import DTYPES

def load_native(name: str, dtype: str | None = None):
    """(model, processor) of a native VLM by hub name or directory (never with ``trust_remote_code``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs = {"dtype": DTYPES[dtype]} if dtype else {}
    with pretrained_errors("the vision-language model", name, vlm=True, hint=" (a hub name, or a directory written by "
                           "save_pretrained with its processor)"):  # one line for each way it can fail
        processor = AutoProcessor.from_pretrained(name)
        model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    native_family(model)  # a VLM of no supported family: one clear line
    return model, processor


def visual_tokens(config) -> int | None:
    """The image placeholders a native VLM's processor writes per image (its family's rule), None where the number
    depends on the image (Qwen2-VL's dynamic resolution, LLaVA-NeXT's tiles)."""
    family = next((f for f in FAMILIES if config.model_type in f.model_types), None)
    return None if family is None else family.image_tokens(config)


class NativeText:
    """What the rest of dept-vl asks of a text backbone, for a native VLM's language model."""

    def __init__(self, owner: "NativeVisionLanguageModel"):
        self._owner = owner

    @property
    def tokenizer(self):
        return self._owner.processor.tokenizer

    @property
    def embeddings(self) -> nn.Module:
        return self._owner.vlm.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.embeddings.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    @property
    def kind(self) -> str:
        return "seq2seq" if self._owner.native.is_encoder_decoder else "causal"

    def to(self, *args, **kwargs):
        language_input(self._owner.vlm)[0].to(*args, **kwargs)
        return self

    def unknown_words(self, text: str) -> tuple[int, int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        unk = self.tokenizer.unk_token_id
        return sum(unk is not None and i == unk for i in ids), len(ids)


class NativeVisionLanguageModel(VLModel):
    """A frozen native VLM with its processor; trainable: the method (and with ``train_projector`` the VLM's own
    projector). ``native`` is the wrapper that runs the method after the image merge."""

    reads_images = True
    any_number_of_images = True
    vision = None  # no separate frozen encoder: images go through the VLM itself (its features cached inside)

    def __init__(self, config: ModelConfig, vlm: nn.Module | None = None, processor=None):
        super().__init__()
        self.config = config = copy.deepcopy(config)
        if vlm is None:
            vlm, processor = load_native(config.vlm, config.text.dtype)
        self.processor, self.text = processor, NativeText(self)
        self.fast_path, self.bucket_multiple, self.generation_options = None, None, {}
        self.native = self._apply_method(vlm)
        self.tokens_per_image = visual_tokens(vlm.config)  # None where it depends on the image
        self.projector_prefixes = self._train_projector() if config.train_projector else ()

    @property
    def vlm(self) -> nn.Module:
        return self.native.model

    @property
    def dept(self):
        return self.native.dept

    backbone_prefix = "native.model."  # the frozen VLM's parameters (param_groups)

    def _apply_method(self, vlm: nn.Module) -> NativeVLMWrapper:
        """The VLM frozen, wrapped; an input method on its merged sequence, or a backbone method on its language
        model (never the vision tower)."""
        method, config = get_method(self.config.method), self.config
        family = native_family(vlm)
        if method.section not in (None, "dept"):
            config.sections[method.section] = config.settings_for()
        if method.adapter is None:
            vlm.requires_grad_(False).eval()
            method.backbone(language_model(vlm), config.settings_for())
            return wrap_input_method(vlm, None, config.method, family)
        vlm.requires_grad_(False).eval()
        dept = dataclasses.replace(config.dept, num_prompts=config.num_prompts)
        adapter = build_input_method(config.method, dept, config.settings_for(), vlm.get_input_embeddings(),
                                     self.processor.tokenizer)
        config.record_method(*resolved_settings(adapter))
        return wrap_input_method(vlm, adapter, config.method, family)

    def _train_projector(self) -> tuple[str, ...]:
        """Unfreeze the VLM's own projector (the bridge from its vision tower to its language model)."""
        found = unfreeze_projector(self.vlm)
        if not found:
            raise ConfigError(f"--train-projector: no projector module ({', '.join(self.native.family.projectors)})"
                              f" in {type(self.vlm).__name__}")
        return tuple(f"native.model.{name}." for name in found)

    def train(self, mode: bool = True):
        super().train(mode)
        if get_method(self.config.method).adapter_only:  # frozen: dropout stays off (full fine-tuning keeps it)
            self.vlm.eval()
        return self

    # ---- training and generation ------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, labels=None, prompt_ids=None, **inputs):
        """The VLM's output; ``.loss``: the mean cross-entropy on ``labels`` (-100 = ignored)."""
        return self.native(input_ids=input_ids, attention_mask=attention_mask, labels=labels, prompt_ids=prompt_ids,
                           **inputs)

    def compile(self, *args, **kwargs) -> None:
        """The wrapped VLM's call compiled (``NativeVLMWrapper.compile``: without graph breaks where its family
        allows); this model's own call only passes its inputs on."""
        self.native.compile(*args, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, prompt_ids=None, max_new_tokens: int | None = None,
                 num_beams: int = 1, **inputs) -> list[str]:
        """Greedy (``num_beams=1``) or beam-search answers as text (``inputs``: the processor's other outputs and
        any ``generate`` option, e.g. ``do_sample=True, temperature=0.7``)."""
        tokenizer = self.processor.tokenizer
        ids = self.native.generate(input_ids=input_ids, attention_mask=attention_mask, prompt_ids=prompt_ids,
                                   max_new_tokens=max_new_tokens or self.config.text.max_target_length,
                                   num_beams=num_beams, pad_token_id=tokenizer.pad_token_id,
                                   **{"do_sample": False, **self.generation_options, **inputs})
        new = ids if self.native.is_encoder_decoder else ids[:, input_ids.shape[1]:]
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]

    # ---- what it is, and runs that share its frozen VLM (``VLModel``) ------------------------------------------
    def render_prompt(self, text: str, images: int, context=()) -> str:
        return self._prompt(text, images, context)

    def backbone_names(self) -> tuple[str, str]:
        return self.config.vlm, self.config.vlm  # one model: its tower and its language model

    def backbone_identity(self, config: ModelConfig | None = None) -> dict:
        """The frozen VLM ``config``'s model (default: this one) needs."""
        config = config or self.config
        if config.vlm is None:
            return {"kind": "an assembled model"}
        return {"kind": "a native VLM", "vlm": fingerprint(config.vlm, "vision-language model"),
                "dtype": config.text.dtype}

    shards_language_model = True

    @property
    def frozen_language_model(self) -> nn.Module:
        return language_model(self.vlm)

    def feature_signature(self) -> dict | None:
        """The VLM's name, configuration and the fingerprint of the weights that make its image features (under
        --train-projector: the tower's output before the projector; None where that does not split per image)."""
        projector = self.cached_projector()
        if self.config.train_projector and projector is None:
            return None
        return vlm_signature(self.vlm, str(self.config.vlm), projector)

    def cached_projector(self) -> nn.Module | None:
        """Under --train-projector, the projector whose input the feature cache holds (``projector_module``)."""
        return projector_module(self.vlm, self.native.family.projectors) if self.config.train_projector else None

    def read_features_from(self, store) -> CachedImageFeatures:
        return cache_image_features(self.vlm, store, self.cached_projector())

    def on_shared_backbone(self, config: ModelConfig) -> "NativeVisionLanguageModel":
        if config.train_projector or self.config.train_projector:
            raise ConfigError("a run that trained its VLM's own projector (--train-projector) changes the VLM: "
                              "serve it alone")
        return NativeVisionLanguageModel(config, vlm=self.vlm, processor=self.processor)

    @torch.no_grad()
    def generate_mixed(self, members: list[Member], max_new_tokens: int | None = None, **options) -> list[str]:
        """Every member's questions through one pass of the shared VLM, each row through its own run's method
        (``methods.native.StackedMethods``): runs of one prompt each (of one length, or of any on a decoder-only
        VLM, where a shorter prompt's unused slots are left padding); else each run's questions in a pass of their
        own (a streamed answer then arrives whole)."""
        adapters = [m.model.dept for m in members]
        lengths = {a.prompt_length for a in adapters if a is not None}
        if any(a is None or a.config.num_prompts > 1 for a in adapters) or (
                len(lengths) > 1 and self.native.is_encoder_decoder):
            options.pop("streamer", None)
            return [answer for m in members for answer in m.model.predict(
                m.texts, m.images, task=m.task, contexts=m.contexts, max_new_tokens=max_new_tokens, **options)]
        rows = torch.cat([torch.full((len(m.texts),), k) for k, m in enumerate(members)])
        batch = self.prepare([t for m in members for t in m.texts], [i for m in members for i in m.images],
                             contexts=[c for m in members for c in m.contexts])  # one prompt each: no prompt_ids
        with self.native.using(StackedMethods(adapters, rows.to(self.text.device))):
            return self.generate(**batch, max_new_tokens=max_new_tokens, **options)

    # ---- checkpoints: the trainable weights only ----------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """The trainable weights and ``dept_vl_config.json`` naming the VLM (``models/saved.py``)."""
        save_trainable(self, directory, {"hidden_size": self.text.hidden_size, "family": native_family(self.vlm).name},
                       local=self.config.vlm)

    def load_trainable(self, directory: str | Path) -> None:
        load_trainable(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone: str | None = None) -> "NativeVisionLanguageModel":
        """The VLM the checkpoint names (``backbone``: from here instead), with the trained weights; ``directory``
        may be a Hugging Face Hub repository (``user/repo``)."""
        directory = local_or_hub(directory)
        meta = read_meta(directory)
        config = ModelConfig.from_dict(meta["model"])
        config.vlm = backbone or saved_backbone(config.vlm, meta.get("backbone_relative"), directory,
                                                "vision-language model")
        model = cls(config)
        if model.text.hidden_size != meta["hidden_size"]:
            raise CheckpointError(f"checkpoint {directory} was trained for width {meta['hidden_size']}, but "
                                  f"{config.vlm!r} has width {model.text.hidden_size}")
        model.load_trainable(directory)
        return model

    # ---- inputs, written by the model's own processor -----------------------------------------------------------
    def _user_turn(self, text: str, images: int, context=()) -> list[dict]:
        """The conversation up to the question: earlier turns (a system turn among them), the images in the first
        user turn, then the question."""
        turns = [(role, turn) for role, turn in context or ()] + [("user", text)]
        first = next(i for i, (role, _) in enumerate(turns) if role == "user")
        return [{"role": role, "content": [*([{"type": "image"}] * images if i == first else []),
                                           {"type": "text", "text": turn}]} for i, (role, turn) in enumerate(turns)]

    def _prompt(self, text: str, images: int, context=()) -> str:
        """The question as the model's chat template writes a user turn (ending where the answer begins), after
        the conversation's earlier turns."""
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(self._user_turn(text, images, context),
                                                      add_generation_prompt=True)
        token = None if self.native.family.images_by_processor else getattr(self.processor, "image_token", None)
        return f"{(token or '') * images}{' '.join(t for _, t in context or ())} {text}".strip()

    def _conversation(self, text: str, target: str, images: int, context=()) -> str:
        """The question and its answer as one conversation (the answer's end marked as the template marks it)."""
        prompt = self._prompt(text, images, context)
        if getattr(self.processor, "chat_template", None):
            turns = self._user_turn(text, images, context) + [{"role": "assistant", "content": [
                {"type": "text", "text": target}]}]
            full = self.processor.apply_chat_template(turns)
            if full.startswith(prompt):
                return full
        return prompt + target + (self.processor.tokenizer.eos_token or "")

    def _encode(self, texts: list[str], images: list) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "right" if self.native.is_encoder_decoder else "left"
        try:
            batch = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        except (ValueError, TypeError) as err:
            raise InputError(f"the model's processor refused the inputs: {' '.join(str(err).split())[:300]}") from None
        return dict(batch)

    def prepare(self, texts: Sequence[str], images=None, image_features=None, targets: Sequence[str] | None = None,
                device=None, task=None, contexts: Sequence | None = None) -> dict:
        """The model's inputs (and ``labels`` of ``targets``) for ``texts`` about ``images`` (one or a list per
        example), on ``device`` (default: the model's); ``contexts``: each example's earlier turns, rendered by
        the chat template before its question."""
        if images is None:
            raise InputError("a native VLM reads images (it has no precomputed features)")
        device = self.text.device if device is None else device
        per_example = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
        pictures = [[as_image(i) for i in ims] for ims in per_example]
        counts, contexts = [len(ims) for ims in pictures], contexts or [()] * len(texts)
        prompts = [self._prompt(t, n, c) for t, n, c in zip(texts, counts, contexts)]
        if targets is None or self.native.is_encoder_decoder:
            batch = self._encode(prompts, pictures)
            if targets is not None:
                batch["labels"] = self.prepare_targets(targets, "cpu")
        else:
            batch = self._encode([self._conversation(t, a, n, c) for t, a, n, c in zip(texts, targets, counts,
                                                                                     contexts)], pictures)
            prompts = self._encode(prompts, pictures)
            batch["labels"] = answer_labels(batch["input_ids"], batch["attention_mask"],
                                            prompts["attention_mask"].sum(1))
        if self.bucket_multiple:
            batch = self._bucketed(batch)
        prompt_ids = self.prompt_ids_for(task, len(texts), device)
        if prompt_ids is not None:
            batch["prompt_ids"] = prompt_ids
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _bucketed(self, batch: dict) -> dict:
        """Under the fast path: the per-token inputs padded to their length's bucket (``models.buckets``), so a
        compiled step sees few shapes; an encoder-decoder's labels (its decoder's targets) to theirs."""
        pad_id = self.processor.tokenizer.pad_token_id
        pads = {"input_ids": self.native.slot_id if pad_id is None else pad_id, "attention_mask": 0,
                **self.native.family.slot_values}
        if not self.native.is_encoder_decoder:
            pads["labels"] = -100
        elif "labels" in batch:
            batch["labels"] = bucket_labels(batch["labels"], self.bucket_multiple, None)
        return bucket_per_token(batch, pads, self.bucket_multiple, left=not self.native.is_encoder_decoder)

    def prepare_targets(self, targets: Sequence[str], device=None) -> torch.Tensor:
        """The answers' token ids (-100 where padded), EOS appended: an encoder-decoder's decoder targets."""
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "right"
        enc = tokenizer([t + (tokenizer.eos_token or "") for t in targets], padding=True, add_special_tokens=False,
                        truncation=True, max_length=self.config.text.max_target_length, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return labels.to(self.text.device if device is None else device)


def answer_labels(input_ids: torch.Tensor, mask: torch.Tensor, prompt_lengths: torch.Tensor) -> torch.Tensor:
    """``input_ids`` as labels of the answer only: -100 on padding and on each row's first ``prompt_lengths`` real
    tokens (the question, its images and the template around them)."""
    real = mask.long().cumsum(1)  # 1 at a row's first real token
    keep = (mask == 1) & (real > prompt_lengths.to(real.device).unsqueeze(1))
    return input_ids.masked_fill(~keep, -100)
