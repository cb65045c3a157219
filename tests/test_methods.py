"""The method registry: what --method offers, budget parity of pt, LoRA at a budget, a user's own method."""

import copy

import pytest
import torch

from dept_vl import ConfigError, DePTConfig, ModelConfig, VisionLanguageModel, list_methods, register_method
from dept_vl.models import methods
from dept_vl.models.methods import attach_prompt, get_method, lora_rank_for_budget, prompt_tuning_config

from conftest import tiny_model_config


def test_the_four_methods_in_order():
    assert list_methods() == ["pt", "dept", "lora", "full"]
    assert [get_method(m).adapter_only for m in list_methods()] == [True, True, True, False]
    assert [get_method(m).modifies_backbone for m in list_methods()] == [False, False, True, True]
    with pytest.raises(ConfigError, match="unknown method 'adapter'; choose from pt, dept, lora, full"):
        get_method("adapter")
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


def test_lora_rank_for_budget(tiny_t5_dir):
    from transformers import AutoModelForSeq2SeqLM

    t5 = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    per_rank = 12 * (32 + 32)  # q and v (32 -> 32) of 2 encoder self-, 2 decoder self- and 2 cross-attentions
    assert lora_rank_for_budget(t5, 3 * per_rank) == 3 and lora_rank_for_budget(t5, 1) == 1


@pytest.fixture
def own_registry(monkeypatch):
    """Methods registered by a test disappear after it."""
    monkeypatch.setattr(methods, "_METHODS", copy.deepcopy(methods._METHODS))


def test_a_users_own_method_is_one_function(own_registry, tiny_clip_dir, tiny_t5_dir):
    @register_method("lowrank-only", help="DePT with the prompt frozen: only A and B (and the projection) train")
    def lowrank_only(model):
        attach_prompt(model, model.config.dept).prompt_embeddings.requires_grad_(False)

    assert "lowrank-only" in list_methods()
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, method="lowrank-only"))
    trainable = set(model.trainable_parameters())
    assert {"dept.lora_embedding_A", "dept.lora_embedding_B"} <= trainable
    assert "dept.prompt_embeddings" not in trainable
    with pytest.warns(UserWarning, match="method 'lowrank-only' was registered already"):
        register_method("lowrank-only", help="again")(lowrank_only)
