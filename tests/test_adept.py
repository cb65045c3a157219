"""ADePT: the formula, its initialisation (prompt tuning at step 0), budget parity, gradients, save / load."""

import math

import pytest
import torch
from torch import nn

from dept_vl import ADePT, DePTConfig, attach_dept, param_groups
from dept_vl.methods.adept import adept_at
from dept_vl.methods import Budget


def make(l=4, r=3, d=8, s=16, seed=0, random_up=True):
    torch.manual_seed(seed)
    adept = ADePT(DePTConfig(prompt_length=l, r=2, max_length=s), r, hidden_size=d)
    if random_up:
        nn.init.normal_(adept.ffn_up)
        nn.init.normal_(adept.ffn_down_bias)
        nn.init.normal_(adept.ffn_up_bias)
    return adept


def test_shapes_and_init_are_prompt_tuning():
    adept = make(random_up=False)
    assert adept.ffn_down.shape == (8, 3) and adept.ffn_up.shape == (3, 8)
    assert adept.ffn_down_bias.shape == (3,) and adept.ffn_up_bias.shape == (8,)
    assert adept.ffn_down.abs().max() <= 1 / math.sqrt(3)  # kaiming_uniform(a=sqrt 5) on fan_in = r
    x = torch.randn(2, 5, 8)
    out, mask = adept(x)
    assert torch.equal(out, torch.cat([adept.prompt_embeddings.expand(2, -1, -1), x], 1))
    assert mask.shape == (2, 9)


def test_formula_token_wise_and_padding_untouched():
    adept = make()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    out, _ = adept(x, mask)
    offset = torch.relu(x @ adept.ffn_down + adept.ffn_down_bias) @ adept.ffn_up + adept.ffn_up_bias
    torch.testing.assert_close(out[:, 4:], x + offset * mask.unsqueeze(-1))
    assert torch.equal(out[1, 4 + 3:], x[1, 3:])
    # token-wise: a token gets the same offset wherever it stands (DePT's depends on the position)
    moved, _ = adept(x.flip(1))
    torch.testing.assert_close(moved[:, 4:].flip(1), x + offset)


def test_budget_parity_with_dept():
    d, s, l = 768, 256, 60
    r = adept_at(Budget(100 * d, d, s, l)).r
    adept = ADePT(DePTConfig(prompt_length=l, r=30, max_length=s), r, hidden_size=d)
    params = sum(p.numel() for p in adept.parameters())
    assert r == 19 and params <= 100 * d < params + 2 * d + 1


def test_gradients_reach_prompt_and_network_only():
    adept = make()
    frozen = nn.Embedding(20, 8).requires_grad_(False)
    out, _ = adept(frozen(torch.randint(0, 20, (2, 6))))
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adept.parameters())
    assert frozen.weight.grad is None


def test_save_and_load(tmp_path):
    adept = make()
    adept.save_pretrained(tmp_path)
    loaded = ADePT.from_pretrained(tmp_path)
    x = torch.randn(1, 4, 8)
    assert loaded.r == 3 and torch.equal(loaded(x)[0], adept(x)[0])


def test_attached_to_a_model_the_network_learns_at_the_lowrank_rate():
    model = nn.Sequential()
    model.embed = nn.Embedding(30, 8)
    model.get_input_embeddings = lambda: model.embed
    wrapped = attach_dept(model, DePTConfig(prompt_length=2, r=2, max_length=16), method="adept")
    assert isinstance(wrapped.dept, ADePT)
    groups = {g["name"]: g for g in param_groups(wrapped, prompt_lr=0.3, lowrank_lr=1e-4)}
    assert groups["prompt"]["params"] == [wrapped.dept.prompt_embeddings]
    assert groups["lowrank"]["params"] == [wrapped.dept.ffn_down, wrapped.dept.ffn_up]
    assert groups["lowrank_no_decay"]["params"] == [wrapped.dept.ffn_down_bias, wrapped.dept.ffn_up_bias]
    assert groups["lowrank"]["lr"] == 1e-4 and groups["prompt"]["lr"] == 0.3
    with pytest.raises(Exception, match="changes the backbone itself"):
        attach_dept(model, DePTConfig(prompt_length=2, r=2, max_length=16), method="lora")
