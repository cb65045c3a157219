"""--cache-features with --train-projector on a native VLM: the tower's output before the projector is cached and
the trained projector runs on it every step; losses and projector gradients are the same as without the cache."""

import json

import pytest
import torch
import transformers as T
from transformers import AutoModelForImageTextToText
from transformers.vision_utils import get_vision_window_index

from dept_vl import DePTConfig, attach_dept
from dept_vl.bench.native import build_vlm
from dept_vl.cli import main
from dept_vl.data.feature_cache import FeatureCache
from dept_vl.errors import CheckpointError
from dept_vl.methods.native import native_family
from dept_vl.models.native_features import cache_image_features, projector_module, vlm_signature
from dept_vl.training.native_cache import native_cache_dir

from test_native_feature_cache import CACHED, one_step_three_ways
from tiny_vlms import FAMILIES, IMG, VSTART, VEND


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


def windowed_qwen2_5_vl():
    """A tiny Qwen2.5-VL whose attention windows hold 2 x 2 merged tokens, and a batch of two images of other grids
    (4 x 3 and 2 x 4 merged tokens, rows of different lengths): their window order is not their raster order."""
    config = FAMILIES["qwen2_5_vl"].build().config
    config.vision_config.window_size = 16
    torch.manual_seed(0)
    model = T.Qwen2_5_VLForConditionalGeneration(config).eval()
    rows = [[1, VSTART] + [IMG] * 12 + [VEND, 20, 21, 22], [1, VSTART] + [IMG] * 8 + [VEND, 23, 24]]
    n = max(map(len, rows))
    ids = torch.tensor([[0] * (n - len(r)) + r for r in rows])
    mask = (torch.arange(n) >= n - torch.tensor([[len(r)] for r in rows])).long()  # left padding
    inputs = {"input_ids": ids, "attention_mask": mask,
              "pixel_values": torch.randn(48 + 32, 3 * 2 * 4 * 4, generator=torch.Generator().manual_seed(1)),
              "image_grid_thw": torch.tensor([[1, 8, 6], [1, 4, 8]]), "mm_token_type_ids": (ids == IMG).long()}
    return model, inputs


def test_qwen2_5_vl_pre_projector_cache_puts_each_image_in_raster_order(tmp_path):
    """Qwen2.5-VL's merger input is in window order, each image's windows its own: cached per image in raster order,
    the merger's output on it is the model's (its reverse index applied), so losses and gradients are the same."""
    model, inputs = windowed_qwen2_5_vl()
    window, _ = get_vision_window_index(inputs["image_grid_thw"], spatial_merge_size=2, window_size=16, patch_size=4)
    assert not torch.equal(window, torch.arange(20))  # in window order, the two images' tokens in their own halves
    assert sorted(window[:12].tolist()) == list(range(12))
    wrapped = attach_dept(model, DePTConfig(prompt_length=3, r=2, max_length=80))
    projector = trainable_projector(model)

    def step():
        projector.zero_grad()
        out = wrapped(**inputs, labels=inputs["input_ids"])
        out.loss.backward()
        return out.loss.item(), [p.grad.clone() for p in projector.parameters()]

    plain = step()
    hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "q", projector)), projector)
    filled, read = step(), step()
    assert (hook.misses, hook.hits) == (2, 2)
    for loss, grads in (filled, read):
        assert loss == pytest.approx(plain[0], abs=1e-5)
        for got, want in zip(grads, plain[1], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


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
