"""A randomly initialised T5 with a word-level tokenizer: the offline default's text backbone (``backbone: random``)
and the bench's backbones of a given shape.

Offline, no pretrained text model can be downloaded; a small random T5 (frozen like any backbone) with a
vocabulary of the task's words keeps the default run small and fast. It is saved to disk so that a checkpoint
reloads onto exactly the same weights.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch

from ..io import read_json, write_dir_atomically, write_json
from .config import RANDOM, ModelConfig, RandomTextConfig
from .names import parse_model_name

ABOUT = "dept_vl_backbone.json"  # what a backbone dept-vl built is (its shape), to describe it

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 (T5's pad / eos / unk convention)


def build_word_tokenizer(texts: Iterable[str], min_count: int = 1):
    """A ``PreTrainedTokenizerFast`` of the words in ``texts``: lower-cased words and punctuation, EOS appended,
    T5's special ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    counts = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    words = sorted(w for w, c in counts.items() if c >= min_count)
    vocab = {tok: i for i, tok in enumerate(list(SPECIALS) + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def save_random_t5(directory: str | Path, shape: RandomTextConfig, tokenizer) -> Path:
    """Build a T5 of ``shape`` (weights from ``shape.seed``, vocabulary of ``tokenizer``) and save both to
    ``directory``, complete or not at all. The caller's random state is left as it was."""
    from transformers import T5Config, T5ForConditionalGeneration

    directory = Path(directory)
    config = T5Config(vocab_size=len(tokenizer), d_model=shape.d_model, d_ff=shape.d_ff,
                      num_layers=shape.num_layers, num_decoder_layers=shape.num_layers, num_heads=shape.num_heads,
                      d_kv=shape.d_model // shape.num_heads, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1)
    with torch.random.fork_rng():  # the run's own random state (prompt init, ...) must not depend on this
        torch.manual_seed(shape.seed)
        model = T5ForConditionalGeneration(config)
    about = {"kind": "random T5", **dataclasses.asdict(shape), "vocabulary": len(tokenizer)}
    # complete or absent: a killed run never leaves half a backbone
    write_dir_atomically(directory, lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp),
                                                 write_json(tmp / ABOUT, about)))
    return directory


def describe_backbone(name: str) -> str:
    """What a backbone is, to show a user: a random T5 of dept-vl's by its shape and vocabulary; anything else by its
    name (a local directory by its last part only: a server's paths are its own)."""
    about = Path(name) / ABOUT
    if about.is_file():
        shape = read_json(about)
        return (f"a random T5 (frozen, seed {shape['seed']}): d {shape['d_model']}, {shape['num_layers']} + "
                f"{shape['num_layers']} layers, a vocabulary of {shape['vocabulary']} words")
    return parse_model_name(name).display()


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
        save_random_t5(directory, config.text.random, build_word_tokenizer(texts))
    return dataclasses.replace(config, text=text)
