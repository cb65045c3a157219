"""``VLModel``: what every dept-vl model is, whichever its kind (the assembled vision encoder -> projection ->
text backbone, ``VisionLanguageModel``; a native Hugging Face VLM, ``NativeVisionLanguageModel``). Training,
inference, evaluation, serving and the benches call this interface and never ask which kind they hold (timm style:
the model describes itself).

Each kind implements:

- ``prepare(texts, images, targets=..., contexts=..., task=...)``: the inputs of ``forward`` / ``generate`` for
  questions (with each one's earlier turns of a conversation) about images, and ``labels`` of ``targets``;
- ``forward(**inputs)`` (``.loss``) and ``generate(**inputs)`` (answers as text);
- ``backbone_names()``: its backbones' names (``describe()``, shared: what it is, to show a user);
- ``backbone_identity()``: the frozen parts it needs, by what they are (runs that share it can share one copy);
  ``on_shared_backbone(config)``: another run's model of ``config`` built on this one's frozen parts;
- ``generate_mixed(members)``: the questions of several runs that share this model's frozen parts, answered with
  one pass of them where the kind can (``Member``: one run's questions);
- ``render_prompt(text, images, context)``: the text its tokenizer reads for a question (``count_tokens``);
- ``save_pretrained`` / ``from_pretrained`` / ``load_trainable``: the adapter (trained weights) only.

Shared here: ``trainable_parameters``, ``prompt_ids_for`` (a prompt per task of a multi-task model), ``predict``,
``freeze_for_inference`` and ``count_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError
from .random_t5 import describe_backbone


@dataclass
class Member:
    """One run's questions in a mixed batch: its model (on the shared frozen parts), the questions' texts, images
    (a list per question), earlier turns (a list of (role, text) per question) and the run's task name."""

    model: "VLModel"
    texts: list[str]
    images: list
    contexts: list
    task: str | None = None


class VLModel(nn.Module):
    """The interface (see the module's docstring) and what both kinds share."""

    # Each kind sets ``config`` (its ModelConfig), ``dept`` (its input method's module: P, A @ B, ...; None for a
    # backbone method), ``text`` (its text side: tokenizer, device) and ``tokens_per_image`` (None where unknown).

    any_number_of_images = False  # it reads however many images a question has (a native VLM), not its task's count

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    @property
    def method_name(self) -> str:
        return self.config.method

    def prompt_ids_for(self, task, count: int, device=None) -> torch.Tensor | int | None:
        """Which prompt the ``count`` examples of ``task`` get in a model with a prompt per task: the task's index
        in ``config.tasks`` (one name), or a tensor of them (a name per example); None for a model of one prompt."""
        if self.dept is None or self.dept.config.num_prompts == 1:
            return None
        names = [task] if task is None or isinstance(task, str) else list(task)
        unknown = [name for name in names if name not in self.config.tasks]
        if unknown:
            raise InputError(f"this model has a prompt for each of its tasks ({', '.join(self.config.tasks)}); name "
                             f"one of them (got {unknown[0]!r})")
        if isinstance(task, str):
            return self.config.tasks.index(task)
        return torch.tensor([self.config.tasks.index(name) for name in names], device=device)

    def predict(self, texts: Sequence[str], images=None, num_beams: int = 1, task=None, contexts=None,
                **settings) -> list[str]:
        """Answer ``texts`` about ``images``: ``model.predict(["what shape is this?"], [Image.open(p)])``;
        ``contexts``: each question's earlier turns of a conversation ((role, text) pairs)."""
        image_features = settings.pop("image_features", None)
        batch = self.prepare(texts, images, image_features=image_features, task=task, contexts=contexts)
        return self.generate(**batch, num_beams=num_beams, **settings)

    def freeze_for_inference(self) -> "VLModel":
        """Precompute what inference never changes (DePT's ``A @ B``, its rows gathered per question)."""
        if self.dept is not None:
            self.dept.freeze_update()
        return self

    def count_tokens(self, text: str) -> int:
        """The tokens ``text`` is to this model's tokenizer (no special tokens added)."""
        return len(self.text.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, text: str, images: int, context=()) -> int:
        """The tokens a question reads: its prompt as the model writes it (template, earlier turns), and its
        images' tokens where the model knows their number."""
        return self.count_tokens(self.render_prompt(text, images, context)) + images * (self.tokens_per_image or 0)

    # ---- at scale: the frozen language model, and frozen features cached inside the model ----------------------
    shards_language_model = False  # FSDP2 on the CPU (training/sharding.py) shards its frozen language model's layers

    @property
    def frozen_language_model(self) -> nn.Module:
        """The Hugging Face language model whose layers ``--gradient-checkpointing`` checkpoints and FSDP shards."""
        raise NotImplementedError

    def feature_signature(self) -> dict | None:
        """What identifies the frozen features this model can read from a cache itself (``read_features_from``);
        None where it has none (an assembled model's encoder is cached by the run, outside the model)."""
        return None

    def read_features_from(self, store):
        """From now on read the frozen image features from ``store`` (a ``FeatureCache``), computing each new image's
        once; the hook, with its hit and miss counts."""
        raise NotImplementedError

    # ---- each kind's own ------------------------------------------------------------------------------------------
    def render_prompt(self, text: str, images: int, context=()) -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        """What it is, to show a user: its backbones (a local directory by its last part only), method and number
        of trainable parameters."""
        vision, text = self.backbone_names()
        return {"vision_encoder": describe_backbone(vision), "text_backbone": describe_backbone(text),
                "method": self.config.method,
                "trainable_parameters": sum(p.numel() for p in self.trainable_parameters().values())}

    def backbone_names(self) -> tuple[str, str]:
        """(its vision encoder's name, its text backbone's name), as its config names them."""
        raise NotImplementedError

    def backbone_identity(self, config=None) -> dict:
        """The frozen parts ``config``'s model (default: this one's) needs, by what they are."""
        raise NotImplementedError

    def on_shared_backbone(self, config) -> "VLModel":
        raise NotImplementedError

    def generate_mixed(self, members: list[Member], **options) -> list[str]:
        raise NotImplementedError
