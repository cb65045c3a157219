"""The VLMs ``dept-vl bench --trl`` trains, each saved offline (random weights) with a processor, so that TRL's
vision-language collator reads ``messages`` + ``images`` rows as it reads a real model's: a tiny LLaVA, the native
bench's named shapes (``--vlm smolvlm-shape`` with an ``Idefics3Processor``, ``--vlm llava-clip-s-shape`` with a
``LlavaProcessor``), or a directory / hub model of one's own, used as given."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as T
from tokenizers import Tokenizer, models, pre_tokenizers

from .native import VLM_SHAPES, build_vlm
from .native_scale import LLAVA_SHAPES

WORDS = "user assistant : ? . what color is the shape red blue green yellow circle square a of".split()
COLOURS = ("red", "blue", "green", "yellow")
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% if m['role'] == 'assistant' %}</s>"
            "{% endif %} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")
IDEFICS3_TEMPLATE = ("<|im_start|>{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
                     "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                     "<end_of_utterance> {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")
IDEFICS3_GRID = [f"<row_{row}_col_{col}>" for row in range(1, 5) for col in range(1, 5)]  # tiles of a split image


def word_tokenizer(tokens: list[str], specials: list[str], **roles: str) -> T.PreTrainedTokenizerFast:
    """A word-level tokenizer of ``tokens`` (ids in order), ``specials`` matched whole inside words."""
    words = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return T.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", additional_special_tokens=specials,
                                     **roles)


def shape_tokens(first: list[str], vocab_size: int) -> list[str]:
    """``first``, the bench's words, unused fillers, and ``<image>`` last: the named shapes' image token is their
    vocabulary's last id."""
    tokens = first + WORDS
    return tokens + [f"<unused_{i}>" for i in range(vocab_size - 1 - len(tokens))] + ["<image>"]


def build_llava(directory: Path) -> str:
    """A tiny LLaVA (CLIP 32 px, 16 image tokens; a 2-layer Llama of width 64) with its processor, saved once."""
    if (directory / "config.json").is_file():
        return str(directory)
    tokens = ["<pad>", "</s>", "<unk>", "<image>"] + WORDS
    tokenizer = word_tokenizer(tokens, ["<image>"], pad_token="<pad>", eos_token="</s>")
    images = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = T.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, chat_template=TEMPLATE,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8),
        text_config=T.LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                                  pad_token_id=0, bos_token_id=1, eos_token_id=1),
        image_token_id=tokens.index("<image>"), vision_feature_select_strategy="default")
    torch.manual_seed(0)
    T.LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def idefics3_processor(name: str) -> T.Idefics3Processor:
    """The processor of a VLM_SHAPES shape (SmolVLM): one image of the tower's size (not split), written as
    ``<fake_token_around_image><global-img>``, (size / patch)^2 / scale^2 ``<image>``, ``<fake_token_around_image>``."""
    vision, text, scale = VLM_SHAPES[name]
    specials = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *IDEFICS3_GRID]
    tokens = shape_tokens(["<pad>", "<|im_start|>", "<end_of_utterance>", "<unk>", *specials[:2], *IDEFICS3_GRID],
                          text["vocab_size"])  # pad 0, bos 1, eos 2 as the shape's config
    tokenizer = word_tokenizer(tokens, ["<image>", *specials], pad_token="<pad>", bos_token="<|im_start|>",
                               eos_token="<end_of_utterance>")
    size = vision["image_size"]
    images = T.Idefics3ImageProcessor(size={"longest_edge": size}, max_image_size={"longest_edge": size},
                                      do_image_splitting=False)
    return T.Idefics3Processor(image_processor=images, tokenizer=tokenizer, chat_template=IDEFICS3_TEMPLATE,
                               image_seq_len=(size // vision["patch_size"]) ** 2 // scale**2)


def llava_processor(name: str) -> T.LlavaProcessor:
    """The processor of a LLAVA_SHAPES shape: CLIP's image processor at the tower's size."""
    vision, text = LLAVA_SHAPES[name]
    tokens = shape_tokens(["<pad>", "<s>", "</s>", "<unk>"], text["vocab_size"])  # pad 0, bos 1, eos 2
    tokenizer = word_tokenizer(tokens, ["<image>"], pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    size = vision["image_size"]
    images = T.CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return T.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision["patch_size"],
                            chat_template=TEMPLATE, vision_feature_select_strategy="default",
                            num_additional_image_tokens=1)


def trl_vlm(name: str | None, directory: Path) -> str:
    """The VLM ``--vlm`` names for the TRL bench, saved with its processor under ``directory`` (once)."""
    if name in (None, "tiny-llava"):
        return build_llava(directory / "tiny-llava")
    if name not in VLM_SHAPES and name not in LLAVA_SHAPES:
        return name
    path = build_vlm(name, directory / name)
    if not (directory / name / "processor_config.json").is_file():
        (idefics3_processor if name in VLM_SHAPES else llava_processor)(name).save_pretrained(path)
    return path
