"""--cache-features on a native VLM: the frozen tower and projector run once per image, then their output comes
from the feature cache; losses and gradients are the same as without (float32)."""

import errno
import json

import pytest
import torch
from safetensors.torch import load_file

from dept_vl import DePTConfig, attach_dept
from dept_vl.cli import main
from dept_vl.data import feature_cache
from dept_vl.data.feature_cache import FeatureCache
from dept_vl.models.native_features import cache_image_features, vlm_signature

from tiny_vlms import FAMILIES, IMG, save_llava_next, save_with_processor

CACHED = ["llava", "qwen2_vl", "paligemma", "smolvlm", "vipllava", "llava_next", "llava_onevision", "florence2",
          "blip2_opt", "blip2_t5"]  # one image per row; dynamic resolution; crops; vipllava: its projector reads
# several of the tower's layers; llava_next, llava_onevision: tiles packed after the projector; florence2 (an
# encoder-decoder): two projector modules; BLIP-2: a Q-Former between its tower and projector, an OPT or a T5


def tower_calls(model) -> list:
    calls = []
    owner = getattr(model, "model", model)  # BLIP-2: no base model inside
    tower = next(getattr(owner, n) for n in ("vision_tower", "visual", "vision_model") if hasattr(owner, n))
    tower.register_forward_hook(lambda *_: calls.append(1))
    return calls


def one_step_three_ways(name, tmp_path, projector_of=None) -> tuple[list, list]:
    """One training step of ``name`` plain, filling the cache, then reading it: the same loss, the tower run to fill
    it and not once it is filled, two units written then read; (plain gradients, read gradients) of what trains:
    DePT's P, A, B (B made non-zero), or with ``projector_of(model)`` that projector (a pre-projector cache)."""
    family = FAMILIES[name]
    inputs = family.inputs([[20, 21, 22, 23, 24], [25, 26, 27]], seed=3)
    results = []
    for cached in (False, True, True):  # plain; cache filled; cache read
        model = family.build()
        wrapped = attach_dept(model, DePTConfig(prompt_length=3, r=2, max_length=80))
        projector = projector_of(model) if projector_of else None
        if projector is None:
            torch.manual_seed(0)
            torch.nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.3)
        calls = tower_calls(model)
        if cached:
            store = FeatureCache(tmp_path / "cache", vlm_signature(model, name, projector))
            hook = cache_image_features(model, store, projector)
        out = wrapped(**inputs, labels=inputs["input_ids"])
        out.loss.backward()
        grads = [p.grad for p in (wrapped.dept if projector is None else projector).parameters()]
        results.append((out.loss.item(), grads, len(calls), (hook.hits, hook.misses) if cached else None))
    (plain, plain_grads, plain_calls, _), (_, _, fill_calls, filled), (loss, grads, read_calls, read) = results
    assert plain_calls == fill_calls == 1 and read_calls == 0  # the tower ran to fill the cache, not once filled
    assert filled == (0, 2) and read == (2, 0)  # two units (images, or an example's crops) written, then read
    assert abs(loss - plain) < 1e-5
    return plain_grads, grads


@pytest.mark.parametrize("name", CACHED)
def test_cached_features_give_the_same_loss_and_gradients(name, tmp_path):
    plain_grads, grads = one_step_three_ways(name, tmp_path)
    for got, want in zip(grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_changed_image_is_computed_again(tmp_path):
    family = FAMILIES["llava"]
    model = family.build()
    hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "llava")))
    first, second = family.inputs([[20, 21]], seed=1), family.inputs([[20, 21]], seed=2)
    with torch.no_grad():
        model(**first)
        model(**first)
        model(**second)
    assert (hook.hits, hook.misses) == (1, 2)


def test_a_full_disk_stops_the_cache_not_the_run(tmp_path, monkeypatch):
    """The first write that finds no space is said once; the features are computed from then on, the same."""
    family = FAMILIES["llava"]
    model = family.build()
    inputs = family.inputs([[20, 21]], seed=1)
    with torch.no_grad():
        want = model(**inputs).logits
    writes = []

    def no_space(path, *args):
        writes.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feature_cache, "write_shard", no_space)
    hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "llava")))
    said = []
    hook.report = said.append
    with torch.no_grad():
        got = [model(**inputs).logits for _ in range(3)]
    assert len(writes) == 1 and len(said) == 1 and "No space left" in said[0] and "the run goes on" in said[0]
    assert (hook.hits, hook.misses) == (0, 3) and hook.unwritable
    for logits in got:
        torch.testing.assert_close(logits, want)


def test_a_tiled_image_is_its_real_tiles_and_its_size(tmp_path):
    """LLaVA-NeXT: the padding tiles are not the image (read whatever they hold); its size is (computed again)."""
    family = FAMILIES["llava_next"]
    model = family.build()
    hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "llava_next")))
    inputs = family.inputs([[20, 21]], seed=1)
    padded = dict(inputs, pixel_values=torch.cat([inputs["pixel_values"], torch.randn(1, 1, 3, 32, 32)], 1))
    with torch.no_grad():
        want = model(**inputs).logits
        got = model(**padded).logits
        model(**dict(inputs, image_sizes=torch.tensor([[32, 31]])))  # as many tokens, another image
    assert (hook.hits, hook.misses) == (1, 2)
    torch.testing.assert_close(got, want)


def test_a_cached_llava_next_generates_as_without_the_cache(tmp_path):
    family = FAMILIES["llava_next"]
    model = family.build()
    inputs = family.inputs([[20, 21, 22], [23, 24]], seed=4)
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        want = model.generate(**inputs, **settings)
        hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "llava_next")))
        filled, read = (model.generate(**inputs, **settings) for _ in range(2))
    assert (hook.hits, hook.misses) == (2, 2)
    assert torch.equal(filled, want) and torch.equal(read, want)


def test_onevision_images_of_a_multi_image_example_are_one_tile_each(tmp_path):
    family = FAMILIES["llava_onevision"]
    model = family.build()
    store = FeatureCache(tmp_path / "c", vlm_signature(model, "llava_onevision"))
    ids = torch.tensor([[1] + [IMG] * 34 + [20, 21]])  # two images of 16 tokens and a newline each
    inputs = {"input_ids": ids, "pixel_values": torch.randn(2, 2, 3, 32, 32), "batch_num_images": torch.tensor([2]),
              "image_sizes": torch.tensor([[32, 32], [32, 32]])}
    with torch.no_grad():
        want = model(**inputs).logits
        hook = cache_image_features(model, store)
        model(**inputs)
        got = model(**inputs).logits
    assert (hook.hits, hook.misses) == (2, 2) and store.get(store.ids()[:1]).shape == (1, 17, 32)
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def tiny_llava_next_dir(tmp_path_factory):
    return save_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


def saved_vlm(name: str, request, tmp_path):
    """A tiny saved VLM with its processor, as a user's ``--vlm DIR``: LLaVA and LLaVA-NeXT (module fixtures);
    Florence-2 and BLIP-2, whose processors put the image tokens in front of the text themselves."""
    if name in ("llava", "llava_next"):
        return request.getfixturevalue(f"tiny_{name}_dir")
    return save_with_processor(name, tmp_path / name)


@pytest.mark.parametrize("name,steps,max_length", [("llava", 4, 48), ("llava_next", 4, 96), ("florence2", 2, 48),
                                                   ("blip2_opt", 2, 48)])
def test_training_with_and_without_the_cache_is_the_same(name, steps, max_length, request, tmp_path, capsys):
    """``dept-vl train`` without then with the cache: the same losses and adapter, the cache written by the cached
    run only."""
    args = ["train", "--vlm", str(saved_vlm(name, request, tmp_path)), "--task", "easyvqa", "--k-shot", "8",
            "--batch-size", "4", "--test-examples", "4", "--set", f"model.dept.max_length={max_length}",
            "--no-tensorboard", "--log-every", "1", "--max-steps", str(steps), "--lr-schedule", "constant",
            "--cache-dir", str(tmp_path / "cache")]
    runs = {}
    for flag in ("--no-cache-features", "--cache-features"):
        run = tmp_path / flag
        assert main(args + [flag, "--output-dir", str(run)]) == 0
        said = capsys.readouterr()
        assert ("image features: cached in" in said.out + said.err) == (flag == "--cache-features")
        runs[flag] = run
    losses = [json.loads((run / "metrics.json").read_text())["train"]["final_loss"] for run in runs.values()]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert len(list((tmp_path / "cache").glob("shard-*"))) >= 2  # written by the cached run only
    plain, cached = (load_file(run / "model" / "adapter_model.safetensors") for run in runs.values())
    for key in plain:
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-5, atol=1e-6)


def test_florence2_generates_from_the_cache_what_it_generates_without(tmp_path):
    """Florence-2's generate reads its image features through the cache (BLIP-2's runs its tower itself)."""
    family = FAMILIES["florence2"]
    inputs = family.inputs([[20, 21, 22], [25, 26, 27]], seed=3)
    answers, counts = [], []
    for cached in (False, True, True):  # plain; cache filled; cache read
        model = family.build()
        wrapped = attach_dept(model, DePTConfig(prompt_length=3, r=2, max_length=80))
        torch.manual_seed(0)
        torch.nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.3)
        if cached:
            hook = cache_image_features(model, FeatureCache(tmp_path / "c", vlm_signature(model, "florence2")))
        answers.append(wrapped.generate(**inputs, max_new_tokens=4, do_sample=False))
        counts.append((hook.hits, hook.misses) if cached else None)
    assert counts == [None, (0, 2), (2, 0)]
    assert all(torch.equal(a, answers[0]) for a in answers) and answers[0].shape[1] > 1


def test_bench_reports_cached_features_and_checkpointing_beside_dept(tmp_path, capsys):
    args = ["bench", "--vlm", "tiny-vlm", "--methods", "dept", "--batch-size", "2", "--text-length", "6",
            "--answer-length", "2", "--prompt-length", "4", "--r", "2", "--max-length", "48", "--steps", "1",
            "--warmup", "0", "--paired", "2", "--cache-features", "--gradient-checkpointing",
            "--output-dir", str(tmp_path)]
    assert main(args) == 0
    scale = json.loads((tmp_path / "bench.json").read_text())["scale"]
    rows = {r["method"]: r for r in scale["results"]}
    assert list(rows) == ["dept+cached-features", "dept+gradient-checkpointing"]
    assert rows["dept+cached-features"]["cache_misses"] == 2 and rows["dept+cached-features"]["cache_hits"] >= 2
    assert [(p["a"], p["b"], p["step_ratio_pairs"]) for p in scale["paired"]] == [
        ("dept+cached-features", "dept", 2), ("dept+gradient-checkpointing", "dept", 2)]
    assert "paired dept+cached-features / dept" in capsys.readouterr().out
