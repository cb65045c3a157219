import pytest

from dept_vl import ConfigError, ModelConfig, list_model_configs


@pytest.mark.parametrize("name", list_model_configs())
def test_named_model_configs_are_valid(name):
    cfg = ModelConfig.from_name(name)
    assert cfg.dept.max_length >= cfg.text.max_length
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_paper_setting_has_equal_budget_to_100_vanilla_tokens():
    cfg = ModelConfig.from_name("t5-base_clip-vit-b32")
    assert cfg.dept.num_parameters(768) == 100 * 768


def test_errors_name_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key ModelConfig.vision.pool_token \(did you mean 'pool_tokens'"):
        ModelConfig.from_dict({"vision": {"pool_token": 4}})
    with pytest.raises(ConfigError, match="needs vision.feature_dim"):
        ModelConfig.from_dict({"vision": {"encoder": "features"}})
    with pytest.raises(ConfigError, match="r must be an integer >= 0"):
        ModelConfig.from_dict({"dept": {"r": -1}})
    with pytest.raises(ConfigError, match="unknown model config 'nope'"):
        ModelConfig.from_name("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vision: [unclosed")
    with pytest.raises(ConfigError, match="cannot parse"):
        ModelConfig.from_file(bad)


def test_prompt_template_holds_the_text_exactly_once():
    assert ModelConfig.from_dict({"text": {"prompt_template": "Q: {text} A:"}}).text.prompt_template == "Q: {text} A:"
    for bad in ("no placeholder", "{text} and {text}", 3):
        with pytest.raises(ConfigError, match="text.prompt_template must hold {text} exactly once"):
            ModelConfig.from_dict({"text": {"prompt_template": bad}})
