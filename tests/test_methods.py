"""The method registry: what --method offers, each method's budget rule, LoRA at a budget, a user's own method."""

import copy

import pytest
import torch

from dept_vl import (ConfigError, DePT, DePTConfig, ModelConfig, VisionLanguageModel, list_methods, param_groups,
                     register_method)
from dept_vl.methods import Budget, get_method, prompt_tuning_config, registry, settings_at_budget
from dept_vl.methods.lora import lora_rank_for_budget

from conftest import tiny_model_config


def test_the_methods_in_order():
    assert list_methods() == ["pt", "dept", "adept", "lora", "full"]
    assert [get_method(m).adapter_only for m in list_methods()] == [True, True, True, True, False]
    assert [get_method(m).modifies_backbone for m in list_methods()] == [False, False, False, True, True]
    assert [get_method(m).section for m in list_methods()] == ["dept", "dept", "adept", "lora", None]
    with pytest.raises(ConfigError, match="unknown method 'xyz'; choose from pt, dept, adept, lora, full"):
        get_method("xyz")
    with pytest.raises(ConfigError, match="unknown method 'dpet' \\(did you mean 'dept'"):
        ModelConfig(method="dpet")


def test_the_bench_registers_its_reference_point_without_offering_it():
    import dept_vl.bench.speed  # noqa: F401  registers 'bare'

    assert "bare" in list_methods(reference=True) and "bare" not in list_methods()
    assert get_method("bare").reference


def test_prompt_tuning_gets_depts_budget():
    dept = DePTConfig(prompt_length=60, r=30, max_length=256)
    pt = prompt_tuning_config(dept, 768)
    assert (pt.prompt_length, pt.r) == (100, 0) and pt.num_parameters(768) == dept.num_parameters(768)
    assert prompt_tuning_config(pt, 768) == pt
    four = prompt_tuning_config(dept, 768, num_prompts=4)  # a prompt per task: the same total budget
    assert (four.prompt_length, four.num_prompts) == (70, 4)
    assert four.num_parameters(768) == DePTConfig(prompt_length=60, r=30, num_prompts=4).num_parameters(768)


def test_every_budget_rule_at_the_papers_budget():
    budget = Budget(100 * 768, 768, 256, 60)  # t5-base, s = 256, m = 100, l = 60
    assert get_method("pt").at_budget(budget).prompt_length == 100
    assert get_method("dept").at_budget(budget).r == 30  # the DePT paper's pair (60, 30)
    assert get_method("adept").at_budget(budget).r == 19  # the ADePT paper's r at l = 60
    assert 60 * 768 + 2 * 19 * 768 + 19 + 768 <= 100 * 768 < 60 * 768 + 2 * 20 * 768 + 20 + 768
    with pytest.raises(ConfigError, match="Budget a backbone"):
        get_method("lora").at_budget(budget)
    assert settings_at_budget("dept", budget) is None and settings_at_budget("full", budget) is None


def test_lora_rank_for_budget(tiny_t5_dir):
    from transformers import AutoModelForSeq2SeqLM

    t5 = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    per_rank = 12 * (32 + 32)  # q and v (32 -> 32) of 2 encoder self-, 2 decoder self- and 2 cross-attentions
    assert lora_rank_for_budget(t5, 3 * per_rank) == 3 and lora_rank_for_budget(t5, 1) == 1
    assert get_method("lora").at_budget(Budget(3 * per_rank, 32, 64, 4, backbone=t5)).r == 3


def test_a_model_config_holds_each_methods_own_section():
    config = ModelConfig.from_dict({"method": "adept", "adept": {"r": 3}, "lora": {"r": 2}})
    assert config.settings_for().r == 3 and config.settings_for("lora").r == 2
    assert config.settings_for("dept") is config.dept
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig().settings_for("lora").r == 8  # absent: the method's defaults
    with pytest.raises(ConfigError, match="unknown key ModelConfig.adpet \\(did you mean 'adept'"):
        ModelConfig.from_dict({"adpet": {"r": 3}})
    with pytest.raises(ConfigError, match="adept.r must be an integer >= 1"):
        ModelConfig.from_dict({"adept": {"r": 0}})


@pytest.fixture
def own_registry(monkeypatch):
    """Methods registered by a test disappear after it."""
    monkeypatch.setattr(registry, "_METHODS", copy.deepcopy(registry._METHODS))


def test_a_users_own_method_is_one_registration(own_registry, tiny_clip_dir, tiny_t5_dir):
    def lowrank_only(ctx):
        dept = DePT(ctx.dept, ctx.hidden_size)
        dept.prompt_embeddings.requires_grad_(False)
        return dept

    register_method("lowrank-only", adapter=lowrank_only, help="DePT with the prompt frozen: only A and B train",
                    param_group=lambda name: "lowrank" if "lora_embedding" in name else None)
    assert "lowrank-only" in list_methods()
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, method="lowrank-only"))
    trainable = set(model.trainable_parameters())
    assert {"dept.lora_embedding_A", "dept.lora_embedding_B"} <= trainable
    assert "dept.prompt_embeddings" not in trainable
    groups = {g["name"]: len(g["params"]) for g in param_groups(model, 0.3, 1e-3)}
    assert groups == {"lowrank": 2, "other": 2, "other_no_decay": 3}  # A, B; the projection: 2 matrices, 3 vectors
    with pytest.warns(UserWarning, match="method 'lowrank-only' was registered already"):
        register_method("lowrank-only", adapter=lowrank_only, help="again")
    with pytest.raises(ConfigError, match="exactly one of adapter"):
        register_method("neither", help="nothing")
