"""A tiny LLaVA-style VLM to try ``--vlm`` offline: a CLIP tower (32 px, patches of 8: 16 image tokens) and a 2-layer
Llama with random weights, a word-level tokenizer that knows easy-vqa's words, a LlavaProcessor and a chat template,
saved with ``save_pretrained`` as a user's own model directory would be (``dept-vl make-tiny-vlm DIR``).

Its weights are random: it shows the path from data to served answers, not what a pretrained VLM learns.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as T
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from ..errors import OutputError

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                 "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% if m['role'] == 'assistant' %}</s>"
                 "{% endif %} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")
EASYVQA_WORDS = ("a black blue brown circle color contain does gray green image in is no not of present rectangle red "
                 "shape teal the there triangle what yellow yes").split()
QUESTION_WORDS = """what which who where how many is are there the a an of this that in on image picture shape color
colour red green blue yellow gray grey black white brown circle rectangle triangle square left right true false yes no
or please cat dog man holding two vqa gqa nlvr caption hi""".split()
CHAT_WORDS = ["user", "assistant", ":", "?", "."]


def chat_tokenizer(words) -> T.PreTrainedTokenizerFast:
    """A word-level tokenizer for a chat model: <pad> 0, </s> 1, <unk> 2, <image> 3, then ``words`` (lower-cased);
    nothing appended (the chat template ends the assistant's turn with </s>)."""
    specials = ["<pad>", "</s>", "<unk>", "<image>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(words) - set(specials)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    return T.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                     additional_special_tokens=["<image>"])


def tiny_llava(words=(), seed: int = 0) -> tuple[T.LlavaForConditionalGeneration, T.LlavaProcessor]:
    """The model (random weights drawn from ``seed``) and its processor; the tokenizer knows easy-vqa's words,
    a few question words and ``words``."""
    tokenizer = chat_tokenizer([*QUESTION_WORDS, *EASYVQA_WORDS, *CHAT_WORDS, *words])
    image_processor = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = T.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                 chat_template=CHAT_TEMPLATE)
    config = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8),
        text_config=T.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                  max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                                  initializer_range=0.2),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T.LlavaForConditionalGeneration(config)
    return model, processor


def save_tiny_llava(path: str | Path, words=(), seed: int = 0) -> Path:
    """Write the tiny LLaVA and its processor to ``path`` (a new or empty directory: nothing there is replaced)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputError(f"{path} exists and is not an empty directory; name a new one")
    model, processor = tiny_llava(words, seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
