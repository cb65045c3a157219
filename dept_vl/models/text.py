"""Frozen Hugging Face text backbones: encoder-decoders (T5, Flan-T5, BART) and decoder-only LMs.

A ``TextBackbone`` owns the tokenizer and the frozen model, and exposes the three calls the
vision-language model needs: ``embed`` token ids, ``loss`` on target text, ``generate`` text,
all from ``inputs_embeds``.
"""

from __future__ import annotations

import inspect
import logging

import torch
from torch import nn

from ..errors import ConfigError
from .gguf import load_gguf
from .loading import pretrained_errors
from .names import parse_model_name

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TextBackbone(nn.Module):
    """A frozen ``AutoModelForSeq2SeqLM`` or ``AutoModelForCausalLM`` plus its tokenizer."""

    def __init__(self, model, tokenizer, name_or_path: str):
        super().__init__()
        self.model, self.tokenizer, self.name_or_path = model, tokenizer, name_or_path
        self.kind = "seq2seq" if model.config.is_encoder_decoder else "causal"
        if self.tokenizer.pad_token_id is None:  # decoder-only LMs often lack a pad token
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters  # most causal LMs
        self.frozen = True
        self.model.requires_grad_(False)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str, tokenizer: str | None = None, dtype: torch.dtype | None = None):
        """Load by hub name or local path (never with ``trust_remote_code``), or a GGUF file (``gguf:FILE``)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        name = parse_model_name(str(name_or_path), role="text backbone")
        if name.kind == "gguf":
            model, tok = load_gguf(name.text, dtype)
            return cls(model, AutoTokenizer.from_pretrained(tokenizer) if tokenizer else tok, name.text)
        if name.kind != "hf":
            raise ConfigError(f"text backbone {name.text!r} is built by dept-vl train (text.backbone: random is "
                              "written into the run directory first)" if name.kind == "random" else
                              f"{name.text!r} is not a text backbone")
        name_or_path = name.ref
        with pretrained_errors("text backbone", name_or_path):
            config = AutoConfig.from_pretrained(name_or_path)
            auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            model = auto.from_pretrained(name_or_path, dtype=dtype) if dtype else auto.from_pretrained(name_or_path)
            tok = AutoTokenizer.from_pretrained(tokenizer or name_or_path)
        return cls(model, tok, str(name_or_path))

    @classmethod
    def from_config(cls, config, backbone: str | None = None) -> "TextBackbone":
        """The backbone a TextConfig names (``backbone`` overrides its path), in its ``dtype``."""
        dtype = DTYPES[config.dtype] if config.dtype else None
        return cls.from_pretrained(backbone or config.backbone, config.tokenizer, dtype=dtype)

    def train(self, mode: bool = True) -> "TextBackbone":
        return super().train(mode and not self.frozen)  # frozen: dropout stays off

    def unfreeze(self) -> "TextBackbone":
        """Make every weight trainable (full fine-tuning)."""
        self.frozen = False
        self.model.requires_grad_(True)
        return self

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    def tokenize(self, texts: list[str], max_length: int, add_eos: bool | None = None,
                 device=None) -> dict[str, torch.Tensor]:
        """Right-padded ids and mask, truncated to ``max_length`` tokens, on ``device`` (default: the backbone's).
        For decoder-only targets ``add_eos`` appends EOS (their tokenizers do not), so that generation learns
        to stop."""
        if add_eos:
            texts = [t + self.tokenizer.eos_token for t in texts]
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        full = (enc["attention_mask"].sum(dim=1) >= max_length).nonzero().flatten().tolist()
        if full:  # only texts that fill max_length can have been cut: tokenize those again, uncut, to know
            self._warn_if_truncated([texts[i] for i in full], max_length)
        device = self.device if device is None else device
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def _warn_if_truncated(self, texts: list[str], max_length: int) -> None:
        """Say once (per backbone) that inputs longer than ``max_length`` tokens are cut."""
        if getattr(self, "_warned_truncation", False):
            return
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
        if max(lengths, default=0) > max_length:
            self._warned_truncation = True
            logging.getLogger("dept_vl").warning(
                "a text of %d tokens was truncated to max_length %d (said once; raise text.max_length to keep "
                "more)", max(lengths), max_length)

    def unknown_words(self, text: str) -> tuple[int, int]:
        """(tokens the tokenizer does not know, tokens) of ``text``, special tokens not counted."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return sum(i == self.tokenizer.unk_token_id for i in ids), len(ids)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids)

    def loss(self, inputs_embeds, attention_mask, labels, position_ids=None, targets_at_end: int | None = None):
        """Mean token cross-entropy of ``labels`` (-100 = ignored) given the input embeddings. A decoder-only model
        whose labels lie in its last ``targets_at_end`` positions computes logits for those (and the one before)
        only, not for the whole sequence times the vocabulary."""
        kwargs = {"position_ids": position_ids} if position_ids is not None else {}
        if targets_at_end and self.keeps_logits:
            keep = targets_at_end + 1
            kwargs["logits_to_keep"], labels = keep, labels[:, -keep:]
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, inputs_embeds, attention_mask, max_new_tokens: int = 16, num_beams: int = 1, **kwargs):
        """Token ids of the continuation (KV cache on; greedy unless ``kwargs`` sample). Decoder-only inputs must be
        left-padded."""
        return self.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            use_cache=True,
            pad_token_id=self.tokenizer.pad_token_id,
            **{"do_sample": False, **kwargs},  # sampled where kwargs say so (do_sample, temperature, top_p)
        )

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
