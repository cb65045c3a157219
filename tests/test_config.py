from pathlib import Path

import pytest
import yaml

from dept_vl import ConfigError, ModelConfig, list_model_configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", list_model_configs())
def test_named_model_configs_are_valid(name):
    cfg = ModelConfig.from_name(name)
    assert cfg.dept.max_length >= cfg.text.max_length
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_paper_setting_has_equal_budget_to_100_vanilla_tokens():
    cfg = ModelConfig.from_name("t5-base_clip-vit-b32")
    assert cfg.dept.num_parameters(768) == 100 * 768


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_recipes_validate(path):
    from dept_vl.tasks import get_task
    from dept_vl.train_config import resolve_recipe

    data = yaml.safe_load(path.read_text())
    assert set(data) == {"model", "train"}
    recipe = resolve_recipe(path)  # every key known, every value valid
    tasks = [get_task(t) for t in recipe.train.tasks]
    assert recipe.model.max_images >= max(t.num_images for t in tasks)
    assert recipe.model.dept.max_length >= recipe.model.text.max_length


def test_paper_recipes_use_the_paper_setting():
    from dept_vl.train_config import resolve_recipe

    for name in ("vqa", "gqa", "nlvr2", "caption", "multitask"):
        model = resolve_recipe(CONFIGS / f"{name}_t5-base_clip.yaml").model
        assert (model.text.backbone, model.vision.encoder) == ("t5-base", "openai/clip-vit-base-patch32")
        assert (model.dept.prompt_length, model.dept.r, model.dept.num_parameters(768)) == (60, 30, 100 * 768)
        # CLIP ViT-B/32 at 224 px: 49 patches + CLS = 50 visual tokens per image, plus the text
        assert 50 * model.max_images + model.text.max_length <= model.dept.max_length


def test_offline_recipe_file_is_the_builtin_default():
    from dept_vl.train_config import resolve_recipe

    assert resolve_recipe(CONFIGS / "easyvqa_offline.yaml") == resolve_recipe(None, {"task": "easyvqa"})


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
