"""A small word-level tokenizer built from a task's own text (for randomly initialised backbones offline)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 (T5's pad / eos / unk convention)


def build_word_tokenizer(texts: Iterable[str], min_count: int = 1):
    """A ``PreTrainedTokenizerFast``: lower-cased words and punctuation, EOS appended, T5 special ids."""
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
