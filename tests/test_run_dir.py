"""The run directory's layout, and finding a saved model from whatever --checkpoint points at."""

import os

import pytest

from dept_vl.errors import CheckpointError, ConfigError, OutputError
from dept_vl.runs.recipe import resolve_recipe
from dept_vl.runs.run_dir import RunDir, SavedModel


def test_layout(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.model == tmp_path / "r" / "model" and run.checkpoints == tmp_path / "r" / "checkpoints"
    assert run.predictions("vqa", "val") == tmp_path / "r" / "predictions-vqa-val.jsonl"
    assert run.eval_outputs({"vqa": "val"}, "val") == {"metrics": tmp_path / "r" / "eval" / "metrics-vqa-val.json",
                                                       "predictions": {"vqa": run.root / "eval" / "predictions-vqa-val.jsonl"}}
    both = run.eval_outputs({"vqa": "test", "nlvr2": "test1"}, "test", limit=5, directory=tmp_path / "x")
    assert both["metrics"] == tmp_path / "x" / "metrics-vqa+nlvr2-test-first5.json"
    assert both["predictions"]["nlvr2"] == tmp_path / "x" / "predictions-nlvr2-test1-first5.jsonl"
    recipe = resolve_recipe(None, {"task": "vqa,gqa", "data_dir": {"vqa": "/d/vqa", "gqa": "/d/gqa"}})
    run.save_recipe(recipe)
    run.save_model(lambda directory: (directory / "weights").write_text("w"), recipe.to_yaml())
    assert (run.model / "weights").read_text() == "w" and (run.model / "recipe.yaml").read_text() == recipe.to_yaml()
    assert resolve_recipe(run.recipe) == recipe
    run.save_metrics({"test": {"accuracy": 1.0}})
    assert run.metrics.read_text().startswith("{")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_vlm):
    run = RunDir(tmp_path_factory.mktemp("saved") / "run")
    recipe = resolve_recipe(None, {"task": "gqa", "data_dir": "/data/gqa"})
    run.save_model(tiny_vlm.save_pretrained, recipe.to_yaml())
    return run


def test_a_run_its_model_dir_and_a_bare_save_are_found(saved_run, tiny_vlm, tmp_path):
    for path in (saved_run.root, saved_run.model):
        saved = SavedModel.find(path)
        assert saved.directory == saved_run.model and saved.tasks == ["gqa"] and saved.task() == "gqa"
        assert saved.data_dir("gqa") == "/data/gqa" and saved.data_dir("vqa") is None
    tiny_vlm.save_pretrained(tmp_path / "bare")
    bare = SavedModel.find(tmp_path / "bare")
    assert bare.recipe is None and bare.task("vqa") == "vqa"
    with pytest.raises(ConfigError, match="name the task with --task"):
        bare.task()
    batch = tiny_vlm.prepare(["what color is it?"], images=[_image()])
    assert bare.load().generate(**batch) == tiny_vlm.generate(**batch)


def test_what_is_not_a_saved_model(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        SavedModel.find(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no dept_vl_config.json in"):
        SavedModel.find(tmp_path)


def _image():
    from PIL import Image

    return Image.new("RGB", (20, 20), "blue")


def test_a_directory_holds_one_run(tmp_path):
    run = RunDir(tmp_path / "r")
    with run.claim():  # a new directory
        run.save_recipe(resolve_recipe(None, {"task": "easyvqa"}))
        (run.root / "notes.txt").write_text("mine")  # a file of the user's
        (run.root / "predictions-easyvqa-test.jsonl").write_text("{}\n")
        with pytest.raises(OutputError, match=f"in use by another dept-vl process \\(pid {os.getpid()}\\)"):
            with run.claim(resume=True):
                pass
    with pytest.raises(OutputError, match="already holds a run; pass --resume to continue it or --overwrite"):
        with run.claim():
            pass
    with run.claim(resume=True):
        assert run.recipe.is_file()
    with run.claim(overwrite=True):
        assert sorted(p.name for p in run.root.iterdir()) == [".lock", "notes.txt"]
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        with RunDir(tmp_path / "f").claim():
            pass
