"""Tiny native Hugging Face VLMs of every family dept-vl adapts, built from transformers' config classes with random
weights (nothing downloaded), and inputs laid out as each family's processor lays them out: the right number of
image placeholder tokens, pixel values of the right shape, and the per-token inputs the family needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import transformers as T

from dept_vl.models.tiny_vlm import CHAT_TEMPLATE, CHAT_WORDS, EASYVQA_WORDS, QUESTION_WORDS, chat_tokenizer

VOCAB, IMG, VIDEO, VSTART, VEND = 300, 290, 291, 292, 293  # text ids stay below 280
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@dataclass
class TinyVLM:
    """One family: ``build()`` a model; ``image_tokens`` placeholders per image; ``inputs(texts, seed)`` the model's
    inputs for rows of text ids (each row: its image placeholders first where the family puts them), unpadded when
    rows are equally long, else padded as its processor pads: on the left for a decoder-only language model, on the
    right for an encoder-decoder."""

    name: str
    build: Callable[[], torch.nn.Module]
    image_tokens: int
    pixels: Callable[[int, torch.Generator], dict]  # batch -> pixel inputs
    layout: Callable[[list[int]], list[int]]  # a row of text ids -> the row with the image placeholders
    extra: Callable[[torch.Tensor], dict] = lambda ids: {}  # per-token inputs made from the final ids
    encoder_decoder: bool = False

    def inputs(self, rows: list[list[int]], seed: int = 0) -> dict:
        rows = [self.layout(r) for r in rows]
        n = max(map(len, rows))
        pad = (lambda row, p: row + p) if self.encoder_decoder else (lambda row, p: p + row)
        ids = torch.tensor([pad(r, [0] * (n - len(r))) for r in rows])
        mask = torch.tensor([pad([1] * len(r), [0] * (n - len(r))) for r in rows])
        pixels = self.pixels(len(rows), torch.Generator().manual_seed(seed))
        return {"input_ids": ids, "attention_mask": mask, **pixels, **self.extra(ids)}


def _seeded(build):
    def wrapped():
        torch.manual_seed(0)
        return build().eval()
    return wrapped


def _clip(**kw):
    return T.CLIPVisionConfig(**VISION, image_size=32, patch_size=8, **kw)


def llava():
    return T.LlavaForConditionalGeneration(T.LlavaConfig(vision_config=_clip(), text_config=T.LlamaConfig(**LLAMA),
                                                         image_token_id=IMG))


def vipllava():  # the projector reads several of the tower's layers
    config = T.VipLlavaConfig(vision_config=_clip(), text_config=T.LlamaConfig(**LLAMA), image_token_id=IMG,
                              vision_feature_layers=[-2, -1])
    return T.VipLlavaForConditionalGeneration(config)


def llava_next():
    config = T.LlavaNextConfig(vision_config=_clip(), text_config=T.LlamaConfig(**LLAMA), image_token_id=IMG,
                               image_grid_pinpoints=[[32, 32]])
    return T.LlavaNextForConditionalGeneration(config)


def llava_onevision():
    config = T.LlavaOnevisionConfig(vision_config=T.SiglipVisionConfig(**VISION, image_size=32, patch_size=8),
                                    text_config=T.Qwen2Config(**LLAMA), image_token_id=IMG,
                                    image_grid_pinpoints=[[32, 32]], vision_feature_layer=-1)
    return T.LlavaOnevisionForConditionalGeneration(config)


def _qwen(config_cls, model_cls, vision):
    text = dict(LLAMA, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    config = config_cls(vision_config=vision, text_config=text, image_token_id=IMG, video_token_id=VIDEO,
                        vision_start_token_id=VSTART, vision_end_token_id=VEND)
    return model_cls(config)


def qwen2_vl():
    return _qwen(T.Qwen2VLConfig, T.Qwen2VLForConditionalGeneration,
                 dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3))


def qwen2_5_vl():
    return _qwen(T.Qwen2_5_VLConfig, T.Qwen2_5_VLForConditionalGeneration,
                 dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3, window_size=8,
                      fullatt_block_indexes=[1]))


def paligemma():
    config = T.PaliGemmaConfig(vision_config=T.SiglipVisionConfig(**VISION, image_size=32, patch_size=8),
                               text_config=T.GemmaConfig(**LLAMA, head_dim=16), image_token_id=IMG, projection_dim=32)
    return T.PaliGemmaForConditionalGeneration(config)


def idefics3():
    config = T.Idefics3Config(vision_config=T.Idefics3VisionConfig(**VISION, image_size=32, patch_size=8),
                              text_config=T.LlamaConfig(**LLAMA), image_token_id=IMG, scale_factor=2)
    return T.Idefics3ForConditionalGeneration(config)


def smolvlm():
    config = T.SmolVLMConfig(vision_config=T.SmolVLMVisionConfig(**VISION, image_size=32, patch_size=8),
                             text_config=T.LlamaConfig(**LLAMA), image_token_id=IMG, scale_factor=2)
    return T.SmolVLMForConditionalGeneration(config)


def florence2():
    vision = T.Florence2VisionConfig(in_channels=3, depths=[1, 1], embed_dim=[16, 32], num_heads=[2, 2],
                                     num_groups=[2, 2], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
                                     patch_prenorm=[False, True], window_size=4, projection_dim=32)
    text = T.BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2, init_std=0.2)
    return T.Florence2ForConditionalGeneration(T.Florence2Config(vision_config=vision, text_config=text,
                                                                 image_token_id=IMG))


def _blip2(text):
    qformer = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   encoder_hidden_size=32)
    config = T.Blip2Config(vision_config=dict(**VISION, image_size=32, patch_size=8), qformer_config=qformer,
                           text_config=text, num_query_tokens=4, image_token_id=IMG)
    return T.Blip2ForConditionalGeneration(config)


def blip2_opt():
    return _blip2(T.OPTConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                              word_embed_proj_dim=32, max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                              eos_token_id=2))


def blip2_t5():
    return _blip2(T.T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16,
                             decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))


def _images(shape):
    return lambda batch, g: {"pixel_values": torch.randn(batch, *shape, generator=g)}


def _qwen_pixels(batch, g):  # 16 x 16 px, 4 x 4 patches of 4 px, merged 2 x 2: 4 tokens per image
    return {"pixel_values": torch.randn(batch * 16, 3 * 2 * 4 * 4, generator=g),
            "image_grid_thw": torch.tensor([[1, 4, 4]] * batch)}


def _front(count):
    return lambda row: [IMG] * count + row


def _bos_then(count):
    return lambda row: [1] + [IMG] * count + row


FAMILIES = {
    "llava": TinyVLM("llava", _seeded(llava), 16, _images((3, 32, 32)), _bos_then(16)),
    "vipllava": TinyVLM("vipllava", _seeded(vipllava), 16, _images((3, 32, 32)), _bos_then(16)),
    "llava_next": TinyVLM("llava_next", _seeded(llava_next), 36, lambda b, g: {
        "pixel_values": torch.randn(b, 2, 3, 32, 32, generator=g), "image_sizes": torch.tensor([[32, 32]] * b)},
        _bos_then(36)),
    "llava_onevision": TinyVLM("llava_onevision", _seeded(llava_onevision), 36, lambda b, g: {  # SigLIP + Qwen2
        "pixel_values": torch.randn(b, 2, 3, 32, 32, generator=g), "image_sizes": torch.tensor([[32, 32]] * b)},
        _bos_then(36)),
    "qwen2_vl": TinyVLM("qwen2_vl", _seeded(qwen2_vl), 4, _qwen_pixels, lambda r: [1, VSTART] + [IMG] * 4 + [VEND] + r,
                        lambda ids: {"mm_token_type_ids": (ids == IMG).long()}),
    "qwen2_5_vl": TinyVLM("qwen2_5_vl", _seeded(qwen2_5_vl), 4, _qwen_pixels,
                          lambda r: [1, VSTART] + [IMG] * 4 + [VEND] + r,
                          lambda ids: {"mm_token_type_ids": (ids == IMG).long()}),
    "paligemma": TinyVLM("paligemma", _seeded(paligemma), 16, _images((3, 32, 32)), lambda r: [IMG] * 16 + [1] + r,
                         lambda ids: {"token_type_ids": torch.zeros_like(ids)}),
    "idefics3": TinyVLM("idefics3", _seeded(idefics3), 4, _images((1, 3, 32, 32)), _bos_then(4)),
    "smolvlm": TinyVLM("smolvlm", _seeded(smolvlm), 4, _images((1, 3, 32, 32)), _bos_then(4)),
    "florence2": TinyVLM("florence2", _seeded(florence2), 17, _images((3, 32, 32)), _front(17), encoder_decoder=True),
    "blip2_opt": TinyVLM("blip2_opt", _seeded(blip2_opt), 4, _images((3, 32, 32)), lambda r: [IMG] * 4 + [1] + r),
    "blip2_t5": TinyVLM("blip2_t5", _seeded(blip2_t5), 4, _images((3, 32, 32)), _front(4), encoder_decoder=True),
}


def save_llava_next(path: Path) -> Path:
    """A tiny LLaVA-NeXT saved with its processor (a user's directory for ``--vlm``): 32 px images, one 32 px grid
    cell, so two tiles per image (the base one and the grid's) and 36 image tokens."""
    tokenizer = chat_tokenizer([*QUESTION_WORDS, *EASYVQA_WORDS, *CHAT_WORDS])
    image_processor = T.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                image_grid_pinpoints=[[32, 32]])
    processor = T.LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                     vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                     chat_template=CHAT_TEMPLATE)
    text = T.LlamaConfig(**dict(LLAMA, vocab_size=len(tokenizer), eos_token_id=1, initializer_range=0.2))
    config = T.LlavaNextConfig(vision_config=_clip(), text_config=text, image_grid_pinpoints=[[32, 32]],
                               image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    T.LlavaNextForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _processor(name: str):
    """A processor of ``name``'s family for 32 px images, with tiny LLaVA's word tokenizer (<image> 3) plus a <s>."""
    base = chat_tokenizer([*QUESTION_WORDS, *EASYVQA_WORDS, *CHAT_WORDS, "<s>"])
    if name == "florence2":  # its processor reads the image token from the tokenizer, the count from the images'
        tokenizer = T.PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, pad_token="<pad>",
                                              eos_token="</s>", unk_token="<unk>", bos_token="<s>",
                                              extra_special_tokens={"image_token": "<image>"})
        images = T.CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False, image_seq_length=17)
        return T.Florence2Processor(image_processor=images, tokenizer=tokenizer)
    images = T.BlipImageProcessor(size={"height": 32, "width": 32})
    return T.Blip2Processor(image_processor=images, tokenizer=base, num_query_tokens=FAMILIES[name].image_tokens)


def save_with_processor(name: str, path: Path) -> Path:
    """``FAMILIES[name]`` (florence2, blip2_opt, blip2_t5) saved with a processor at ``path``: what ``dept-vl train
    --vlm DIR`` loads."""
    model, processor = FAMILIES[name].build(), _processor(name)
    model.config.image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
