"""``--compile`` on a native VLM: the training step (forward with labels -> loss) is one graph, no graph break, as
the fast path counts them, and the compiled step's loss and gradients equal the eager step's."""

import pytest
import torch
from PIL import Image
from torch import nn

from dept_vl import DePTConfig, ModelConfig, attach_dept
from dept_vl.data.feature_cache import FeatureCache
from dept_vl.fast import FastPath
from dept_vl.models import NativeVisionLanguageModel
from dept_vl.methods.native import native_family
from dept_vl.models.native_features import cache_image_features, projector_module, vlm_signature

from tiny_vlms import FAMILIES


def step(call, params, **inputs):
    """(loss, the gradients of ``params``) of one training step."""
    for p in params:
        p.grad = None
    loss = call(**inputs).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def assert_equal_steps(eager, compiled):
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-5, rtol=0)
    for got, want in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def llava(directory):
    config = {"vlm": str(directory), "dept": {"prompt_length": 4, "r": 2, "max_length": 48}}
    torch.manual_seed(0)
    model = NativeVisionLanguageModel(ModelConfig.from_dict(config)).train()
    nn.init.normal_(model.dept.lora_embedding_B, std=0.1)
    batch = model.prepare(["what color is the shape?", "what shape"],
                          [Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")],
                          targets=["red", "blue circle"])
    return model, batch, [p for p in model.parameters() if p.requires_grad]


def test_with_the_feature_cache_the_compiled_step_reads_it_eagerly_and_is_one_graph(tiny_llava_dir, tmp_path):
    """--cache-features hashes pixels on the host: the features are read before the compiled call, which gets them
    instead of the pixels (same loss and gradients as the uncached eager step)."""
    model, batch, params = llava(tiny_llava_dir)
    eager = step(model, params, **batch)
    cache = model.read_features_from(FeatureCache(tmp_path / "features", model.feature_signature()))
    fast = FastPath("aot_eager").apply(model, generation=False).fast_path
    first, second = step(model, params, **batch), step(model, params, **batch)
    assert (cache.misses, cache.hits) == (2, 2)  # computed by the first compiled step, read by the second
    assert fast.graphs == 1 and fast.graph_breaks == 0
    assert_equal_steps(eager, first)
    assert_equal_steps(eager, second)


@pytest.mark.parametrize("name,cached", [("paligemma", False), ("florence2", False), ("idefics3", True),
                                         ("llava_next", True), ("llava_onevision", True), ("florence2", True),
                                         ("blip2_opt", True), ("qwen2_vl", True), ("qwen2_5_vl", True)])
def test_other_families_compile_to_one_graph_equal_to_eager(name, cached, tmp_path):
    """Idefics3, LLaVA-NeXT and OneVision with their image features in the feature cache (without it: Idefics3's
    tower drops padding crops with a boolean index, LLaVA-NeXT's tile counts come from ``image_sizes``' values);
    Florence-2 (its forward takes no ``mm_encoder_outputs``: the features come in as its pixel values) and BLIP-2 (a
    Q-Former, and its forward reads more of the image output) with the cache too. Qwen2-VL / Qwen2.5-VL with the
    cache (without it their tower splits its attention by the grids' values): their M-RoPE positions, read from the
    ids' values, are computed before the compiled call on the sequence with the prompt's slots, rows of different
    lengths (left padding) included."""
    family = FAMILIES[name]
    vlm = family.build()
    wrapped = attach_dept(vlm, DePTConfig(prompt_length=3, r=2, max_length=80))
    nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.1)
    inputs = family.inputs([[20, 21, 22, 23, 24], [20, 21, 22]])
    inputs["labels"] = torch.tensor([[20, 21, 2]] * 2) if family.encoder_decoder else inputs["input_ids"]
    params = list(wrapped.dept.parameters())
    eager = step(wrapped, params, **inputs)
    if cached:
        cache = cache_image_features(vlm, FeatureCache(tmp_path / "features", vlm_signature(vlm, name)))
    fast = FastPath("aot_eager")
    wrapped.compile(backend=fast.compile_graph, dynamic=False)
    steps = [step(wrapped, params, **inputs) for _ in range(2 if cached else 1)]
    assert fast.graphs == 1 and fast.graph_breaks == 0
    for compiled in steps:
        assert_equal_steps(eager, compiled)
    assert not cached or (cache.misses, cache.hits) == (2, 2)


def test_under_the_fast_path_batches_of_one_bucket_are_one_graph_with_their_unpadded_losses(tiny_llava_dir):
    """As ``dept-vl train --vlm ... --compile`` runs it: the model compiled in place by the fast path (before any
    eager call, or after eager steps installed its vision tower's output-capturing hooks), its lengths bucketed as the
    assembled models' (left padding: mask 0, labels -100): questions of different lengths compile once, and each
    step's loss and gradients are its unpadded eager step's."""
    used, _, used_params = llava(tiny_llava_dir)
    questions = [["what color is the shape?"] * 2, ["what color is the shape in the image?"] * 2]
    pictures, answers = [Image.new("RGB", (32, 32), "red")] * 2, ["red", "blue circle"]
    unpadded = [used.prepare(q, pictures, targets=answers) for q in questions]
    eager = [step(used, used_params, **batch) for batch in unpadded]
    fresh, _, fresh_params = llava(tiny_llava_dir)  # the same weights, never called
    for model, params in ((fresh, fresh_params), (used, used_params)):
        fast = FastPath("aot_eager", bucket_multiple=8).apply(model, generation=False).fast_path
        batches = [model.prepare(q, pictures, targets=answers) for q in questions]
        assert len({b["input_ids"].shape[1] for b in unpadded}) == 2
        assert len({b["input_ids"].shape[1] for b in batches}) == 1 and batches[0]["input_ids"].shape[1] % 8 == 0
        for want, batch in zip(eager, batches):
            compiled = step(model, params, **batch)
            assert_equal_steps(want, compiled)
            assert len(params) == 3 and all(g.abs().sum() > 0 for g in compiled[1])
        assert fast.graphs == 1 and fast.graph_breaks == 0


@pytest.mark.parametrize("name", ["idefics3", "paligemma", "qwen2_vl", "qwen2_5_vl"])
def test_with_the_projector_trained_the_pre_projector_cache_compiles_to_one_graph(name, tmp_path):
    """--train-projector with the cache: the tower's output is read before the compiled call and the projector runs
    on it there (eagerly); the step is one graph, and its loss, DePT's and the projector's gradients equal eager's."""
    family = FAMILIES[name]
    vlm = family.build()
    wrapped = attach_dept(vlm, DePTConfig(prompt_length=3, r=2, max_length=80))
    projector = projector_module(vlm, native_family(vlm).projectors).requires_grad_(True)
    nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.1)
    inputs = family.inputs([[20, 21, 22, 23, 24], [20, 21, 22]])
    inputs["labels"] = inputs["input_ids"]
    params = list(wrapped.dept.parameters()) + list(projector.parameters())
    eager = step(wrapped, params, **inputs)
    signature = vlm_signature(vlm, name, projector)
    cache = cache_image_features(vlm, FeatureCache(tmp_path / "features", signature), projector)
    fast = FastPath("aot_eager")
    wrapped.compile(backend=fast.compile_graph, dynamic=False)
    steps = [step(wrapped, params, **inputs) for _ in range(2)]
    assert fast.graphs == 1 and fast.graph_breaks == 0 and (cache.misses, cache.hits) == (2, 2)
    for compiled in steps:
        assert_equal_steps(eager, compiled)
