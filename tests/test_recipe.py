"""Recipes: every shipped YAML validates, precedence of defaults, file and flags, clear errors."""

from pathlib import Path

import pytest
import yaml

from dept_vl.data.batches import BatchOrder
from dept_vl.data.tasks import get_task
from dept_vl.errors import ConfigError
from dept_vl.runs.recipe import RECIPE_DIR as CONFIGS
from dept_vl.runs.recipe import OWN_DATA_EPOCHS, Recipe, TrainConfig, find_recipe, list_recipes, resolve_recipe
from dept_vl.training.length import total_steps



@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_recipes_validate(path):
    data = yaml.safe_load(path.read_text())
    assert set(data) == {"model", "train"}
    recipe = resolve_recipe(path)  # every key known, every value valid
    tasks = [get_task(t) for t in recipe.tasks]
    assert recipe.model.max_images >= max(t.num_images for t in tasks)
    assert recipe.model.dept.max_length >= recipe.model.text.max_length


def test_paper_recipes_use_the_paper_setting():
    for name in ("vqa", "gqa", "nlvr2", "caption", "multitask"):
        model = resolve_recipe(CONFIGS / f"{name}_t5-base_clip.yaml").model
        assert (model.text.backbone, model.vision.encoder) == ("t5-base", "openai/clip-vit-base-patch32")
        assert (model.dept.prompt_length, model.dept.r, model.dept.num_parameters(768)) == (60, 30, 100 * 768)
        # CLIP ViT-B/32 at 224 px: 49 patches + CLS = 50 visual tokens per image, plus the text
        assert 50 * model.max_images + model.text.max_length <= model.dept.max_length


def test_offline_recipe_file_is_the_builtin_default():
    assert resolve_recipe(CONFIGS / "easyvqa_offline.yaml") == resolve_recipe(None, {"task": "easyvqa"})


def test_recipe_precedence_and_errors(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_steps: 7\n  batch_size: 4\nmodel:\n  dept: {prompt_length: 5, r: 1, max_length: 64}\n"
                    "  text: {backbone: random}\n")
    recipe = resolve_recipe(path, {"batch_size": 2}, model_overrides={"method": "pt"})
    assert (recipe.train.max_steps, recipe.train.batch_size, recipe.model.method) == (7, 2, "pt")
    assert recipe.model.dept.prompt_length == 5
    default = resolve_recipe(None, {"task": "nlvr2"})
    assert default.model.max_images == 2 and default.model.text.backbone == "t5-base"
    path.write_text("train:\n  max_step: 7\n")
    with pytest.raises(ConfigError, match=r"unknown key train.max_step \(did you mean 'max_steps'"):
        resolve_recipe(path)
    with pytest.raises(ConfigError, match="prompt_lr must be > 0"):
        TrainConfig(prompt_lr=0)


@pytest.mark.parametrize("field,value,needle", [
    ("batch_size", True, "train.batch_size must be an integer >= 1, got True"),
    ("max_steps", 2.5, "train.max_steps must be an integer >= 0, got 2.5"),
    ("prompt_lr", False, "train.prompt_lr must be > 0, got False"),
    ("weight_decay", -0.1, "train.weight_decay must be >= 0"),
    ("mixed_precision", "fp8", "train.mixed_precision must be one of no, bf16, fp16"),
])
def test_train_values_are_checked_booleans_included(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**{field: value})


def test_packaged_recipes_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "vqa_t5-base_clip" in list_recipes() and "easyvqa_offline" in list_recipes()
    assert find_recipe("vqa_t5-base_clip") == CONFIGS / "vqa_t5-base_clip.yaml"
    assert find_recipe("configs/vqa_t5-base_clip.yaml") == CONFIGS / "vqa_t5-base_clip.yaml"  # 0.1's path
    (tmp_path / "vqa_t5-base_clip.yaml").write_text("train: {max_steps: 7}\n")
    assert resolve_recipe("vqa_t5-base_clip.yaml").train.max_steps == 7  # a file that exists wins
    with pytest.raises(ConfigError, match="config file not found: nope.yaml .*easyvqa_offline"):
        find_recipe("nope.yaml")


def test_each_task_its_data_from_the_command_line_or_relative_to_the_recipe(tmp_path, monkeypatch):
    from dept_vl.data.data_dirs import DataDirs

    monkeypatch.chdir(tmp_path)
    assert DataDirs.parse(["vqa=data/vqa", "gqa=/abs/gqa"], tmp_path).to_plain() == {
        "vqa": str(tmp_path / "data" / "vqa"), "gqa": "/abs/gqa"}
    assert DataDirs.parse("d", tmp_path).to_plain() == str(tmp_path / "d")
    assert DataDirs.parse(["hf:lmms-lab/GQA"], tmp_path).to_plain() == "hf:lmms-lab/GQA"
    assert DataDirs.parse(["weird=name"], tmp_path).to_plain() == str(tmp_path / "weird=name")  # a directory's name
    with pytest.raises(ConfigError, match="give one --data-dir DIR .*or --data-dir TASK=DIR for each task"):
        DataDirs.parse(["a", "vqa=b"], tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "mine.yaml").write_text("train: {task: 'vqa,gqa', data_dir: {vqa: ../data/vqa, gqa: ../data/gqa}}\n")
    recipe = resolve_recipe(recipes / "mine.yaml", {"data_dir": ["gqa=elsewhere/gqa"]})
    assert recipe.train.data_dir.to_plain() == {"vqa": str(tmp_path / "data" / "vqa"),
                                                "gqa": str(tmp_path / "elsewhere" / "gqa")}
    monkeypatch.chdir(recipes)  # the file's paths do not depend on where dept-vl runs
    assert resolve_recipe(recipes / "mine.yaml").data_dir_for("vqa") == str(tmp_path / "data" / "vqa")
    packaged = resolve_recipe("shapes_multitask").train.data_dir.per_task  # packaged: relative to the working dir
    assert packaged["caption"] == str(recipes / "data" / "shapes" / "caption")
    with pytest.raises(ConfigError, match="--data-dir TASK=DIR for each of vqa, gqa"):
        resolve_recipe(recipes / "mine.yaml", {"data_dir": ["one/dir"]}).data_dir_for("vqa")


def test_epochs_alone_set_the_length_and_own_data_defaults_to_epochs(tmp_path):
    assert (resolve_recipe(None, {"epochs": 2}).train.max_steps, resolve_recipe(None, {"epochs": 2}).train.epochs) \
        == (0, 2)
    assert resolve_recipe(None, {}).train.max_steps == 3000  # a task keeps its steps
    with pytest.raises(ConfigError, match="--max-steps or --epochs, not both"):
        resolve_recipe(None, {"epochs": 2, "max_steps": 5})
    (tmp_path / "r.yaml").write_text("train: {epochs: 20}\n")
    assert resolve_recipe(tmp_path / "r.yaml", {}).train.max_steps == 0  # the file's epochs over the default steps
    assert resolve_recipe(tmp_path / "r.yaml", {"max_steps": 7}).train.max_steps == 7  # a flag over the file
    data = str(Path(__file__).resolve().parents[1] / "examples" / "simple-jsonl" / "train.jsonl")
    own = resolve_recipe(None, {"data": [data]}).train
    assert (own.max_steps, own.epochs) == (0, OWN_DATA_EPOCHS) and OWN_DATA_EPOCHS == 3
    assert resolve_recipe(None, {"data": [data], "max_steps": 9}).train.max_steps == 9


def test_steps_that_mean_many_passes_over_a_small_set_are_warned_about():
    said = []
    small = BatchOrder([24], 32, seed=0)
    assert total_steps(TrainConfig(max_steps=3000), small, said.append) == 3000
    assert len(said) == 1 and "3,000 steps of batch 32 are 3,000 passes over 24 training examples" in said[0]
    assert total_steps(TrainConfig(max_steps=0, epochs=2.5), BatchOrder([100], 32, seed=0), said.append) == 10
    assert total_steps(TrainConfig(max_steps=40), BatchOrder([100], 32, seed=0), said.append) == 40  # 10 passes
    assert len(said) == 1


def test_own_data_is_the_recipes_data_section(tmp_path):
    (tmp_path / "shapes").mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        (tmp_path / "shapes" / name).write_text("{}\n")
    (tmp_path / "r.yaml").write_text("model: {config: random-t5_efficientnet-lite0}\ndata:\n  train: shapes/train.jsonl\n  test: shapes/test.jsonl\n"
                                     "  metric: vqa\n  test_fraction: 0.2\n")
    recipe = resolve_recipe(tmp_path / "r.yaml", {"max_steps": 4}, data_overrides={"format": "simple"})
    spec = recipe.own_data()["shapes"]  # named after the folder of its train.jsonl; paths relative to the recipe
    assert recipe.tasks == ["shapes"] and recipe.run_name == "r"
    assert (spec.train, spec.test) == (str(tmp_path / "shapes" / "train.jsonl"), str(tmp_path / "shapes" / "test.jsonl"))
    assert (spec.metric, spec.format, spec.test_fraction, spec.val_fraction) == ("vqa", "simple", 0.2, 0.0)
    saved = recipe.to_dict()
    assert set(saved) == {"model", "train", "data"} and not {"data", "metric", "val_data"} & set(saved["train"])
    recipe.save(tmp_path / "saved.yaml")
    assert Recipe.from_file(tmp_path / "saved.yaml") == recipe
    assert "data" not in resolve_recipe(None, {"task": "easyvqa"}).to_dict()  # a built-in task: no data section
    with pytest.raises(ConfigError, match="'shapes2', which --data does not name"):
        resolve_recipe(tmp_path / "r.yaml", data_overrides={"val": ["shapes2=x.jsonl"]})


def test_recipes_with_own_data_under_train_still_read(tmp_path):
    """dept-vl 0.2 wrote own-data settings as train: keys; its recipes and runs read into the data: section."""
    data = str(Path(__file__).resolve().parents[1] / "examples" / "simple-jsonl" / "train.jsonl")
    flat = {"model": {"config": "random-t5_efficientnet-lite0"},
            "train": {"max_steps": 5, "data": {"shapes": data}, "data_format": "simple", "metric": "exact",
                      "data_kinds": {"shapes": {"takes_question": True, "num_images": 1}}}}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(flat))
    recipe = Recipe.from_file(tmp_path / "old.yaml")
    assert recipe.tasks == ["shapes"] and recipe.data.format == "simple" and recipe.train.max_steps == 5
    assert recipe.own_data()["shapes"].takes_question is True  # what the run recorded: the data need not be read
    resolved = resolve_recipe(tmp_path / "old.yaml", {"data": [f"shapes={data}"], "metric": "vqa"})
    assert (resolved.data.format, resolved.data.metric, resolved.data.train) == ("simple", "vqa", {"shapes": data})
