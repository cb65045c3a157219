import pytest
import torch

from dept_vl import ConfigError, TextBackbone


def test_seq2seq_backbone_from_path(tiny_t5_dir):
    text = TextBackbone.from_pretrained(tiny_t5_dir)
    assert text.kind == "seq2seq" and text.hidden_size == 32
    assert not any(p.requires_grad for p in text.parameters())
    text.train()
    assert not text.model.training


def check_tokenize(text: TextBackbone) -> None:
    batch = text.tokenize(["vqa: what is the color of the cat?", "hi"], max_length=8)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0, -1].item() == 1  # truncated, still ends with </s>
    assert batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]  # "hi" -> [hi, </s>] + pads
    assert text.decode(text.tokenizer(["a red circle"], return_tensors="pt")["input_ids"]) == ["a red circle"]


def test_tokenize_truncates_keeps_eos_and_pads(tiny_t5_dir):
    text = TextBackbone.from_pretrained(tiny_t5_dir)  # the T5-style tokenizer the tests build
    assert len(text.tokenizer) == 32100
    check_tokenize(text)


def test_real_t5_tokenizer(tiny_t5_dir, real_t5_tokenizer, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir).save_pretrained(tmp_path)
    real_t5_tokenizer.save_pretrained(tmp_path)
    text = TextBackbone.from_pretrained(str(tmp_path))
    assert len(text.tokenizer) == 32100
    check_tokenize(text)


def test_causal_backbone_gets_a_pad_token_and_eos_targets(tiny_llama_dir):
    text = TextBackbone.from_pretrained(tiny_llama_dir)
    assert text.kind == "causal" and text.tokenizer.pad_token_id is not None
    enc = text.tokenize(["yes"], max_length=8, add_eos=True)
    assert enc["input_ids"][0, -1].item() == text.tokenizer.eos_token_id


def test_unknown_backbone(tmp_path):
    with pytest.raises(ConfigError, match="cannot load text backbone"):
        TextBackbone.from_pretrained(str(tmp_path / "nothing-here"))


def test_bf16_weights(tiny_t5_dir):
    text = TextBackbone.from_pretrained(tiny_t5_dir, dtype=torch.bfloat16)
    assert text.dtype == torch.bfloat16


def test_unknown_words_are_counted(tiny_t5_dir):
    text = TextBackbone.from_pretrained(tiny_t5_dir)  # a word-level vocabulary: unknown words are <unk>
    assert text.unknown_words("what color is the zorblat") == (1, 5)
    assert text.unknown_words("") == (0, 0)


def test_a_causal_loss_on_trailing_targets_computes_only_their_logits(tiny_llama_dir):
    text = TextBackbone.from_pretrained(tiny_llama_dir)
    assert text.keeps_logits
    torch.manual_seed(0)
    embeds, mask = torch.randn(2, 9, 32), torch.ones(2, 9, dtype=torch.long)
    labels = torch.full((2, 9), -100)
    labels[:, -3:] = torch.tensor([[5, 6, 1], [7, 1, -100]])  # the targets: the last 3 positions
    full = text.loss(embeds, mask, labels)
    trimmed = text.loss(embeds, mask, labels, targets_at_end=3)
    assert full.logits.shape[1] == 9 and trimmed.logits.shape[1] == 4  # the targets and the position before
    torch.testing.assert_close(trimmed.loss, full.loss)
    torch.testing.assert_close(trimmed.logits, full.logits[:, -4:])
