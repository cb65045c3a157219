"""--cache-features with --train-projector on a native VLM: the tower's output before the projector is cached and
the trained projector runs on it every step; losses and projector gradients are the same as without the cache."""

import json

import pytest
import torch

from transformers import AutoModelForImageTextToText

from dept_vl.bench.native import build_vlm
from dept_vl.cli import main
from dept_vl.data.feature_cache import FeatureCache
from dept_vl.errors import CheckpointError
from dept_vl.methods.native import native_family
from dept_vl.models.native_features import projector_module, vlm_signature
from dept_vl.training.native_cache import native_cache_dir

from test_native_feature_cache import CACHED, one_step_three_ways
from tiny_vlms import FAMILIES


def trainable_projector(model):
    projector = projector_module(model, native_family(model).projectors)
    projector.requires_grad_(True)
    return projector


@pytest.mark.parametrize("name", CACHED)
def test_pre_projector_cache_gives_the_same_loss_and_projector_gradients(name, tmp_path):
    plain_grads, grads = one_step_three_ways(name, tmp_path, projector_of=trainable_projector)
    assert all(g is not None for g in plain_grads) and len(grads) == len(plain_grads) > 0
    for got, want in zip(grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_family_whose_projector_input_does_not_split_per_image_is_not_cached():
    model = FAMILIES["qwen2_5_vl"].build()  # Qwen2.5-VL reorders its windows after the merger
    assert projector_module(model, native_family(model).projectors) is None


def test_florence2s_two_projector_modules_are_cached_before_the_first():
    model = FAMILIES["florence2"].build()
    projector = projector_module(model, native_family(model).projectors)
    inner = model.model.multi_modal_projector
    assert list(projector) == [inner.image_projection, inner.image_proj_norm]


def test_the_two_kinds_of_cache_entry_never_meet(tmp_path):
    model = FAMILIES["llava"].build()
    projected = vlm_signature(model, "llava")
    pre = vlm_signature(model, "llava", projector_module(model, native_family(model).projectors))
    assert projected != pre and pre["features"] == "pre-projector" and "features" not in projected
    assert native_cache_dir(projected, None) != native_cache_dir(pre, None)
    assert native_cache_dir(pre, None).name.endswith("-pre-projector")
    FeatureCache(tmp_path / "c", projected)
    with pytest.raises(CheckpointError, match="was made with"):  # one --cache-dir: the other kind is refused
        FeatureCache(tmp_path / "c", pre)


def test_the_pre_projector_cache_ignores_the_projector_weights():
    model = FAMILIES["paligemma"].build()
    projector = projector_module(model, native_family(model).projectors)
    before = vlm_signature(model, "p", projector)
    projected = vlm_signature(model, "p")
    with torch.no_grad():
        next(projector.parameters()).add_(1.0)  # a trained projector: its input, the cache, is unchanged
    assert vlm_signature(model, "p", projector) == before and vlm_signature(model, "p") != projected


def test_training_the_projector_with_and_without_the_cache_is_the_same(tiny_llava_dir, tmp_path, capsys):
    args = ["train", "--vlm", str(tiny_llava_dir), "--task", "easyvqa", "--k-shot", "8", "--batch-size", "4",
            "--test-examples", "4", "--set", "model.dept.max_length=48", "--no-tensorboard", "--log-every", "1",
            "--max-steps", "3", "--lr-schedule", "constant", "--train-projector", "--cache-dir", str(tmp_path / "c")]
    losses = []
    for flag in ("--no-cache-features", "--cache-features"):
        assert main(args + [flag, "--output-dir", str(tmp_path / flag)]) == 0
        losses.append(json.loads((tmp_path / flag / "metrics.json").read_text())["train"]["final_loss"])
    captured = capsys.readouterr()
    assert "before the trained projector: cached in" in captured.out + captured.err
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    made = json.loads(next((tmp_path / "c").glob("*.json")).read_text())
    assert made["signature"]["features"] == "pre-projector"
    assert len(list((tmp_path / "c").glob("shard-*"))) >= 2


def test_bench_times_the_pre_projector_cache_with_the_projector_training(tmp_path):
    args = ["bench", "--vlm", "tiny-vlm", "--methods", "dept", "--batch-size", "2", "--text-length", "6",
            "--answer-length", "2", "--prompt-length", "4", "--r", "2", "--max-length", "48", "--steps", "1",
            "--warmup", "0", "--paired", "2", "--cache-features", "--no-isolate"]
    reports = {}
    for extra in ([], ["--train-projector"]):
        out = tmp_path / ("projector" if extra else "plain")
        assert main(args + extra + ["--output-dir", str(out)]) == 0
        reports[bool(extra)] = json.loads((out / "bench.json").read_text())
    vlm = AutoModelForImageTextToText.from_pretrained(build_vlm("tiny-vlm", tmp_path / "vlm"))
    connector = sum(p.numel() for p in projector_module(vlm, native_family(vlm).projectors).parameters())
    trainable = [r["results"][0]["trainable_params"] for r in (reports[False], reports[True])]
    assert trainable[1] - trainable[0] == connector > 0
    cached = reports[True]["scale"]["results"][0]
    assert (cached["method"], cached["cache_misses"]) == ("dept+cached-features", 2) and cached["cache_hits"] >= 2
