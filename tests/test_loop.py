"""dept-vl train: the run directory, exact resume, every method, validation + best checkpoint, NaN, multi-task."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from dept_vl.errors import CheckpointError, TrainingError, TrainingInterrupted
from dept_vl.training.loop import train
from dept_vl.runs.recipe import Recipe
from dept_vl.training.state import best_checkpoint, latest_checkpoint
from dept_vl._dataclass import from_dict

TINY_MODEL = {
    "vision": {"encoder": "efficientnet-lite0", "image_size": 32, "pool_tokens": 1},
    "text": {"backbone": "random", "max_length": 16, "max_target_length": 4,
             "random": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2}},
    "dept": {"prompt_length": 4, "r": 2, "max_length": 24},
}


def tiny_recipe(tmp_path, name="run", model=None, **train_overrides) -> Recipe:
    data = {"model": {**TINY_MODEL, **(model or {})},
            "train": {"task": "easyvqa", "k_shot": 48, "max_steps": 6, "batch_size": 8, "test_examples": 16,
                      "output_dir": str(tmp_path / name), "cache_dir": str(tmp_path / "cache"), "log_every": 2,
                      "tensorboard": False, "warmup_steps": 1, **train_overrides}}
    return from_dict(Recipe, data, "recipe")


def adapter(path):
    return load_file(str(path / "adapter_model.safetensors"))


def test_run_directory_holds_everything(tmp_path):
    metrics = train(tiny_recipe(tmp_path, tensorboard=True), log=lambda *_: None)
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert metrics["train"]["steps"] == 6 and metrics["train"]["processes"] == 1
    assert set(metrics) == {"train", "test"}  # "val" only when the run validated (--eval-every)
    assert metrics["test"] == {"split": "test", "examples": 16, **{k: metrics["test"][k] for k in (
        "accuracy", "accuracy/color", "accuracy/shape", "accuracy/yes/no")}}
    lines = (run / "predictions-easyvqa-test.jsonl").read_text().splitlines()
    assert len(lines) == 16 and {"id", "prediction", "targets"} <= set(json.loads(lines[0]))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "model" / "recipe.yaml").is_file() and (run / "recipe.yaml").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert latest_checkpoint(run / "checkpoints").name == "step-000006"
    assert sorted(adapter(run / "model")) == ["dept.lora_embedding_A", "dept.lora_embedding_B",
                                              "dept.prompt_embeddings", "projection.image_index.weight",
                                              "projection.linear.bias", "projection.linear.weight",
                                              "projection.norm.bias", "projection.norm.weight"]


def test_resume_after_sigint_is_exact(tmp_path, monkeypatch):
    train(tiny_recipe(tmp_path, "straight", max_steps=8), log=lambda *_: None)

    from dept_vl.models import VisionLanguageModel

    real = VisionLanguageModel.forward
    calls = {"n": 0}

    def interrupt_at_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # handled: the loop saves at the end of this step
        return real(self, *args, **kwargs)

    monkeypatch.setattr(VisionLanguageModel, "forward", interrupt_at_third)
    with pytest.raises(TrainingInterrupted, match=r"SIGINT at step 3/8: checkpoint saved .*--resume"):
        train(tiny_recipe(tmp_path, "resumed", max_steps=8), log=lambda *_: None)
    monkeypatch.setattr(VisionLanguageModel, "forward", real)
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-000003"
    metrics = train(tiny_recipe(tmp_path, "resumed", max_steps=8), resume=True, log=lambda *_: None)
    straight, resumed = adapter(tmp_path / "straight" / "model"), adapter(tmp_path / "resumed" / "model")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert metrics["test"] == json.loads((tmp_path / "straight" / "metrics.json").read_text())["test"]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train(tiny_recipe(tmp_path), resume=True, log=lambda *_: None)


@pytest.mark.parametrize("method", ["pt", "adept", "lora", "full"])
def test_methods(tmp_path, method):
    recipe = tiny_recipe(tmp_path, model={"method": method, "lora": {"r": 2}}, max_steps=2, test_examples=4)
    metrics = train(recipe, log=lambda *_: None)
    model_dir = tmp_path / "run" / "model"
    weights = load_file(model_dir / "model.safetensors") if method == "full" else adapter(model_dir)
    assert (model_dir / "adapter_model.safetensors").exists() == (method != "full")  # full: not an adapter
    projection = 32 * 1280 + 32 + 2 * 32 + 2 * 32  # linear + bias, image index, LayerNorm
    if method == "pt":  # DePT's budget (4*32 + 24*2 + 2*32 = 240) as 240 / 32 = 8 prompt tokens, no A, B
        assert weights["dept.prompt_embeddings"].shape == (8, 32) and "dept.lora_embedding_A" not in weights
    elif method == "adept":  # the rest of DePT's budget (240 - 4*32 = 112) as r = (112 - 32) // 65 = 1
        assert weights["dept.ffn_down"].shape == (32, 1) and weights["dept.prompt_embeddings"].shape == (4, 32)
        saved = json.loads((model_dir / "dept_vl_config.json").read_text())["model"]
        assert saved["adept"] == {"r": 1} and saved["method"] == "adept"
    elif method == "lora":
        assert any("lora_A" in k for k in weights) and not any(k.startswith("dept.") for k in weights)
        assert all("lora_" in k or k.startswith("projection.") for k in weights)
    else:  # full fine-tuning saves the whole text backbone
        backbone = [k for k in weights if k.startswith("text.model.")]
        assert len(backbone) > 20 and any("SelfAttention.q.weight" in k for k in backbone)
    assert metrics["train"]["trainable_params"] == sum(w.numel() for w in weights.values())
    if method == "full":
        assert metrics["train"]["trainable_params"] > projection + 10_000
    assert metrics["train"]["method"] == method and metrics["test"]["accuracy"] >= 0.0


def test_validation_keeps_best_checkpoint(tmp_path):
    recipe = tiny_recipe(tmp_path, eval_split="test", eval_examples=8, eval_every=2, max_steps=6, keep_checkpoints=1)
    metrics = train(recipe, log=lambda *_: None)
    root = tmp_path / "run" / "checkpoints"
    best = best_checkpoint(root)
    assert best is not None and int(best.name.split("-")[1]) == metrics["val"]["step"]
    assert best.exists() and latest_checkpoint(root).name == "step-000006"  # rotation spares the best
    assert adapter(best).keys() == adapter(tmp_path / "run" / "model").keys()
    assert all(torch.equal(adapter(best)[k], adapter(tmp_path / "run" / "model")[k]) for k in adapter(best))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from dept_vl.models import VisionLanguageModel

    real = VisionLanguageModel.forward
    calls = {"n": 0}

    def nan_on_fourth(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VisionLanguageModel, "forward", nan_on_fourth)
    with pytest.raises(TrainingError, match=r"loss became nan or inf at step 4.*step-000002"):
        train(tiny_recipe(tmp_path, save_every=2), log=lambda *_: None)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-000002"
    calls["n"] = 0
    metrics = train(tiny_recipe(tmp_path, "skipping", skip_nan=True), log=lambda *_: None)
    assert metrics["train"]["steps"] == 6


def test_multitask_two_images_and_gradient_accumulation(tmp_path, vl_data):
    recipe = tiny_recipe(tmp_path, model={"max_images": 2}, task="vqa,nlvr2", k_shot=0, batch_size=2, grad_accum=2,
                         data_dir={"vqa": str(vl_data["vqa"]), "nlvr2": str(vl_data["nlvr2"])}, max_steps=3,
                         test_examples=0)
    metrics = train(recipe, log=lambda *_: None)
    assert {"vqa/accuracy", "vqa/accuracy/other", "nlvr2/accuracy"} <= set(metrics["test"])
    assert (tmp_path / "run" / "predictions-nlvr2-test1.jsonl").is_file()
    from dept_vl.training.state import load_state

    history = load_state(latest_checkpoint(tmp_path / "run" / "checkpoints"))["history"]
    logged = [h for h in history if "loss" in h]  # each task's own training loss, for the curves
    assert all(h.keys() >= {"loss/vqa", "loss/nlvr2"} for h in logged[:-1]) and logged
    weights = adapter(tmp_path / "run" / "model")  # a prompt per task, one A and B
    assert weights["dept.prompt_embeddings"].shape == (2, 4, 32) and "dept.lora_embedding_A" in weights
    from dept_vl.inference.predict import Predictor
    from dept_vl.data.tasks import get_task

    pair = get_task("nlvr2").load("dev", vl_data["nlvr2"])
    example = pair.examples[0]
    predict = Predictor(str(tmp_path / "run"), task="nlvr2")
    answer = predict([pair.images[i] for i in example.image_ids], "There are two dogs.")
    assert isinstance(answer, str)
    with pytest.raises(Exception, match="takes 2 image"):
        predict([pair.images[example.image_ids[0]]], "There are two dogs.")


def test_epochs_and_bf16(tmp_path):
    metrics = train(tiny_recipe(tmp_path, max_steps=0, epochs=1.0, k_shot=16, mixed_precision="bf16",
                                test_examples=4), log=lambda *_: None)
    assert metrics["train"]["steps"] == 2  # one epoch of 16 examples in batches of 8
    assert metrics["train"]["final_loss"] > 0


def test_a_fresh_run_does_not_depend_on_an_existing_backbone(tmp_path):
    train(tiny_recipe(tmp_path, max_steps=2, test_examples=2), log=lambda *_: None)
    first = adapter(tmp_path / "run" / "model")
    train(tiny_recipe(tmp_path, max_steps=2, test_examples=2), overwrite=True, log=lambda *_: None)  # anew
    second = adapter(tmp_path / "run" / "model")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_loop_reads_nothing_back_from_the_device_between_log_points(tmp_path, monkeypatch):
    """Host syncs (item, tolist, bool, float, int) made by train.py itself: a fixed number per run, not per step."""
    import sys

    import dept_vl.training.loop as train_module

    counts = {"n": 0}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            if sys._getframe(1).f_code.co_filename == train_module.__file__:
                counts["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    per_run = []
    for steps in (2, 5):
        counts["n"] = 0
        train(tiny_recipe(tmp_path, f"run{steps}", max_steps=steps, log_every=100, test_examples=0),
              log=lambda *_: None)
        per_run.append(counts["n"])
    assert per_run[0] == per_run[1] > 0  # the final log / checkpoint read the device; the steps between do not


def test_a_compiled_run_trains_as_the_eager_one(tmp_path):
    """--compile: the step compiled over bucketed lengths (aot_eager: the same graphs, no code generation), the same
    losses, weights and answers as eager, one graph per bucket and no graph break."""
    eager = train(tiny_recipe(tmp_path, "eager", max_steps=10, compile=False), log=lambda *_: None)
    compiled = train(tiny_recipe(tmp_path, "compiled", max_steps=10, compile=True, compile_backend="aot_eager"),
                     log=lambda *_: None)
    assert "compile" not in eager["train"]
    stats = compiled["train"]["compile"]
    assert stats["graph_breaks"] == 0 and 1 <= stats["graphs"] <= 8 and stats["bucket_multiple"] == 8
    assert abs(compiled["train"]["final_loss"] - eager["train"]["final_loss"]) < 1e-4
    first, second = adapter(tmp_path / "eager" / "model"), adapter(tmp_path / "compiled" / "model")
    assert all(torch.allclose(first[k], second[k], atol=1e-4) for k in first)
    assert compiled["test"] == eager["test"]
    predictions = [(tmp_path / run / "predictions-easyvqa-test.jsonl").read_text() for run in ("eager", "compiled")]
    assert predictions[0] == predictions[1]
