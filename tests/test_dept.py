import math

import pytest
import torch
from torch import nn

from dept_vl import ConfigError, DePT, DePTConfig, InputError, position_ids_from_mask


def make(l=5, r=4, s=16, d=8, seed=0, random_b=True, **kw):
    torch.manual_seed(seed)
    dept = DePT(DePTConfig(prompt_length=l, r=r, max_length=s, **kw), hidden_size=d)
    if random_b and r:
        nn.init.normal_(dept.lora_embedding_B)
    return dept


def test_shapes_and_init():
    dept = make(random_b=False)
    assert dept.prompt_embeddings.shape == (5, 8)
    assert dept.lora_embedding_A.shape == (16, 4) and dept.lora_embedding_B.shape == (4, 8)
    assert torch.count_nonzero(dept.lora_embedding_B) == 0
    bound = 1 / math.sqrt(4)  # kaiming_uniform(a=sqrt 5) on fan_in = r
    assert dept.lora_embedding_A.abs().max() <= bound
    assert dept.lora_embedding_A.std() > 0.2 * bound


def test_equals_prompt_tuning_at_init():
    dept = make(random_b=False)
    x, mask = torch.randn(3, 7, 8), torch.ones(3, 7, dtype=torch.long)
    out, out_mask = dept(x, mask)
    expected = torch.cat([dept.prompt_embeddings.expand(3, -1, -1), x], 1)
    assert torch.equal(out, expected)
    assert out_mask.shape == (3, 12) and out_mask.sum().item() == 36


def test_formula_on_random_tensors():
    dept = make(r=3, d=6, s=10)
    x = torch.randn(2, 7, 6)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    out, out_mask = dept(x, mask)
    A, B, P = dept.lora_embedding_A, dept.lora_embedding_B, dept.prompt_embeddings
    scaling = 8 / math.sqrt(3)
    expected = torch.cat([P.expand(2, -1, -1), x + scaling * (A @ B)[:7] * mask.unsqueeze(-1)], 1)
    torch.testing.assert_close(out, expected)
    assert torch.equal(out[1, 5 + 4:], x[1, 4:])  # padding never meets A
    assert out_mask.tolist() == [[1] * 5 + [1] * 7, [1] * 5 + [1] * 4 + [0] * 3]


def test_dynamic_length_equals_padding_to_max_length():
    dept = make(s=32)
    x = torch.randn(2, 9, 8)
    short, _ = dept(x, torch.ones(2, 9, dtype=torch.long))
    padded_x = torch.cat([x, torch.zeros(2, 23, 8)], 1)
    padded_mask = torch.cat([torch.ones(2, 9), torch.zeros(2, 23)], 1).long()
    padded, mask = dept(padded_x, padded_mask)
    assert padded.shape == (2, 5 + 32, 8)
    torch.testing.assert_close(padded[:, : 5 + 9], short)
    assert mask[:, : 5 + 9].all() and not mask[:, 5 + 9 :].any()


def test_too_long_input_error_names_both_numbers():
    dept = make(s=6)
    with pytest.raises(InputError, match="input length 7 exceeds DePT max_length 6"):
        dept(torch.randn(1, 7, 8))


def test_truncate_option():
    dept = make(s=6, truncate=True)
    with pytest.warns(UserWarning, match="truncating"):
        out, mask = dept(torch.randn(2, 9, 8), torch.ones(2, 9, dtype=torch.long))
    assert out.shape == (2, 5 + 6, 8) and mask.shape == (2, 11)


def test_r_zero_is_plain_prompt_tuning():
    dept = make(r=0)
    assert dept.lora_embedding_A is None and dept.scaling == 0
    assert sum(p.numel() for p in dept.parameters()) == 5 * 8
    x = torch.randn(2, 4, 8)
    out, _ = dept(x)
    assert torch.equal(out[:, 5:], x)


def test_left_padding_uses_real_positions():
    dept = make()
    x = torch.randn(1, 4, 8)
    ref, _ = dept(x)
    left_x = torch.cat([torch.zeros(1, 3, 8), x], 1)
    left_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]])
    out, _ = dept(left_x, left_mask, position_ids=position_ids_from_mask(left_mask))
    torch.testing.assert_close(out[:, 5 + 3 :], ref[:, 5:])
    naive, _ = dept(left_x, left_mask)  # without positions the rows of A are shifted
    assert not torch.allclose(naive[:, 5 + 3 :], ref[:, 5:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtypes(dtype):
    dept = make()
    x = torch.randn(2, 6, 8)
    ref, _ = dept(x)
    out, _ = dept(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    half = make().to(dtype)
    out2, _ = half(x.to(dtype))
    assert out2.dtype == dtype and torch.isfinite(out2.float()).all()


def test_gradients_reach_p_a_b_only():
    dept = make()
    frozen = nn.Embedding(20, 8).requires_grad_(False)
    out, _ = dept(frozen(torch.randint(0, 20, (2, 6))))
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dept.parameters())
    assert frozen.weight.grad is None


def test_prompt_init_from_text_repeats_tokens(word_tokenizer):
    emb = nn.Embedding(len(word_tokenizer), 8)
    dept = DePT(DePTConfig(prompt_length=7, r=2, max_length=8, prompt_init="text", prompt_init_text="yes or no"),
                hidden_size=8)
    dept.initialize_prompt(word_tokenizer, emb)
    ids = word_tokenizer("yes or no")["input_ids"]  # includes </s>, as in the official code
    expected_ids = (ids * 7)[:7]
    torch.testing.assert_close(dept.prompt_embeddings.data, emb.weight[expected_ids].detach())


def test_prompt_init_from_vocab_samples_top_k_rows():
    emb = nn.Embedding(1000, 8)
    dept = DePT(DePTConfig(prompt_length=20, r=2, max_length=8, prompt_init="vocab", prompt_init_vocab_top_k=50),
                hidden_size=8)
    dept.initialize_prompt(None, emb)
    equal = (dept.prompt_embeddings.data[:, None, :] == emb.weight.data[None]).all(-1)  # (20, 1000)
    assert equal.any(dim=1).all()  # every prompt row is some token's embedding
    assert equal.nonzero()[:, 1].max() < 50  # ... of a token id below top_k


def test_hidden_size_required_and_checked():
    with pytest.raises(ConfigError, match="hidden_size"):
        DePT(DePTConfig())
    with pytest.raises(InputError, match=r"\(batch, length, 8\)"):
        make()(torch.randn(2, 3, 9))


def test_a_prompt_per_task_sharing_a_and_b():
    dept = make(l=3, r=2, s=8, d=4, num_prompts=3)
    assert dept.prompt_embeddings.shape == (3, 3, 4)
    assert dept.config.num_parameters() == 3 * 3 * 4 + 8 * 2 + 2 * 4
    x = torch.randn(2, 5, 4)
    out, _ = dept(x, prompt_ids=2)  # one task for the whole batch
    update = dept.scaling * (dept.lora_embedding_A[:5] @ dept.lora_embedding_B)
    torch.testing.assert_close(out, torch.cat([dept.prompt_embeddings[2].expand(2, -1, -1), x + update], 1))
    mixed, _ = dept(x, prompt_ids=torch.tensor([0, 2]))  # one task per example
    assert torch.equal(mixed[0, :3], dept.prompt_embeddings[0]) and torch.equal(mixed[1, :3], dept.prompt_embeddings[2])
    out.pow(2).sum().backward()  # a batch of task 2: the other prompts' gradient is zero
    grad = dept.prompt_embeddings.grad
    assert grad[:2].abs().sum() == 0 and grad[2].abs().sum() > 0 and dept.lora_embedding_B.grad is not None
    with pytest.raises(InputError, match="has 3 prompts .* give prompt_ids"):
        dept(x)


def test_several_prompts_save_and_load(tmp_path):
    dept = make(l=3, r=2, s=8, d=4, num_prompts=2)
    dept.save_pretrained(tmp_path)
    loaded = DePT.from_pretrained(tmp_path)
    assert loaded.config.num_prompts == 2
    x = torch.randn(1, 4, 4)
    assert torch.equal(loaded(x, prompt_ids=1)[0], dept(x, prompt_ids=1)[0])
