"""A randomly initialised T5 with a word-level tokenizer from the task's own text (``text.backbone: random``).

Offline, no pretrained text model can be downloaded; a small random T5 (frozen like any backbone) with a
vocabulary of the task's words keeps the default run small and fast. It is saved to disk so the checkpoint
reloads onto exactly the same weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import torch

from .config import RANDOM, ModelConfig
from .tokenizer import build_word_tokenizer


def materialize_random_backbone(config: ModelConfig, texts: Iterable[str], directory: str | Path,
                                write: bool = True) -> ModelConfig:
    """If ``config.text.backbone == "random"``, build and save the random T5 under ``directory`` (unless it is
    already there, or ``write`` is False: another process writes it) and return a config naming it by absolute
    path; otherwise return ``config`` unchanged."""
    if config.text.backbone != RANDOM:
        return config
    directory = Path(directory).resolve()
    text = dataclasses.replace(config.text, backbone=str(directory), random=None)
    if write and not (directory / "config.json").is_file():
        _write_random_t5(config.text.random, texts, directory)
    return dataclasses.replace(config, text=text)


def _write_random_t5(shape, texts: Iterable[str], directory: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_word_tokenizer(texts)
    model_config = T5Config(vocab_size=len(tokenizer), d_model=shape.d_model, d_ff=shape.d_ff,
                            num_layers=shape.num_layers, num_decoder_layers=shape.num_layers,
                            num_heads=shape.num_heads, d_kv=shape.d_model // shape.num_heads,
                            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    tmp = directory.with_name(directory.name + ".tmp")
    with torch.random.fork_rng():  # the run's own random state (prompt init, ...) must not depend on this
        torch.manual_seed(shape.seed)
        model = T5ForConditionalGeneration(model_config)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(directory)  # complete or absent: a killed run never leaves half a backbone
