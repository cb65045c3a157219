import math

import pytest

from dept_vl import ConfigError, DePTConfig


@pytest.mark.parametrize("field,value,needle", [
    ("r", -1, "r must be an integer >= 0"),
    ("prompt_length", 0, "prompt_length must be an integer >= 1"),
    ("max_length", 0, "max_length must be an integer >= 1"),
    ("lora_alpha", 0, "lora_alpha must be > 0"),
    ("lora_alpha", -2.0, "lora_alpha must be > 0"),
    ("prompt_init", "zeros", "prompt_init must be one of random, text, vocab"),
    ("r", 2.5, "r must be an integer"),
])
def test_invalid_values_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        DePTConfig(**{field: value})


def test_text_init_needs_text():
    with pytest.raises(ConfigError, match="prompt_init_text"):
        DePTConfig(prompt_init="text")


def test_scaling_is_alpha_over_sqrt_r():
    assert DePTConfig(r=16, lora_alpha=8).scaling == pytest.approx(2.0)
    assert DePTConfig(r=30).scaling == pytest.approx(8 / math.sqrt(30))
    assert DePTConfig(r=0).scaling == 0.0


def test_num_parameters_matches_budget_formula():
    cfg = DePTConfig(prompt_length=60, r=30, max_length=256)
    assert cfg.num_parameters(768) == 60 * 768 + 256 * 30 + 30 * 768 == 100 * 768


def test_from_dict_suggests_closest_key():
    with pytest.raises(ConfigError, match=r"prompt_lenght.*did you mean 'prompt_length'"):
        DePTConfig.from_dict({"prompt_lenght": 10})
    assert DePTConfig.from_dict(DePTConfig(r=3).to_dict()) == DePTConfig(r=3)
