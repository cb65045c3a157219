import pytest
import torch
from torch import nn

from dept_vl import ConfigError, DePT, DePTConfig, count_parameters, param_groups


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.proj = nn.Linear(4, 8)
        self.dept = DePT(DePTConfig(prompt_length=3, r=2, max_length=10), hidden_size=8)
        nn.init.normal_(self.dept.lora_embedding_B)

    def forward(self, x):
        out, _ = self.dept(self.proj(self.frozen(x)))
        return out.pow(2).mean()


def test_groups_hold_the_right_parameters():
    model = Toy()
    groups = {g["name"]: g for g in param_groups(model, prompt_lr=0.3, lowrank_lr=1e-3, weight_decay=0.01)}
    assert groups["prompt"]["params"] == [model.dept.prompt_embeddings]
    assert groups["lowrank"]["params"] == [model.dept.lora_embedding_A, model.dept.lora_embedding_B]
    assert groups["other"]["params"] == [model.proj.weight]
    assert groups["other_no_decay"]["params"] == [model.proj.bias]
    assert groups["prompt"]["weight_decay"] == 0.0 and groups["lowrank"]["weight_decay"] == 0.01
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == count_parameters(model) == 3 * 8 + 10 * 2 + 2 * 8 + 4 * 8 + 8


def test_two_learning_rates_are_applied():
    model = Toy()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(param_groups(model, prompt_lr=0.3, lowrank_lr=1e-3), betas=(0.9, 0.999), eps=1e-12)
    model(torch.randn(5, 6, 4)).backward()
    opt.step()
    step = {n: (p.detach() - before[n]).abs() for n, p in model.named_parameters()}
    # Adam's first step moves every coordinate with a non-zero gradient by exactly lr.
    moved_p = step["dept.prompt_embeddings"][step["dept.prompt_embeddings"] > 0]
    moved_a = step["dept.lora_embedding_A"][step["dept.lora_embedding_A"] > 0]
    torch.testing.assert_close(moved_p, torch.full_like(moved_p, 0.3), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(moved_a, torch.full_like(moved_a, 1e-3), rtol=1e-3, atol=1e-7)
    assert torch.equal(step["frozen.weight"], torch.zeros(4, 4))


def test_invalid_lr():
    with pytest.raises(ConfigError, match="prompt_lr must be > 0"):
        param_groups(Toy(), prompt_lr=0, lowrank_lr=1e-3)
