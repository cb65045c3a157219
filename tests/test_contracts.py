"""Contract tests: every registered method, task and vision encoder through the same checks (peft style), so that
a new registration is tested the moment it exists."""

import dataclasses

import pytest
import torch
from PIL import Image

import dept_vl.bench.speed  # noqa: F401  registers the bench's reference point 'bare': it is checked too
from dept_vl import VisionConfig, VisionLanguageModel, create_vision_encoder, list_methods, param_groups
from dept_vl.data.feature_cache import default_cache_dir, encoder_signature, open_feature_cache
from dept_vl.data.tasks import get_task, list_tasks
from dept_vl.models.vision import list_vision_encoders

from conftest import tiny_model_config

METHODS = list_methods(reference=True)


def tiny(method, tiny_clip_dir, tiny_t5_dir):
    torch.manual_seed(0)
    return VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, method=method, lora={"r": 2}))


def batch(model):
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green", "white")]
    return model.prepare(["what color is it?"] * 4, images, targets=["red", "blue", "green", "white"])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_groups_each_trainable_tensor_once(method, tiny_clip_dir, tiny_t5_dir):
    model = tiny(method, tiny_clip_dir, tiny_t5_dir)
    groups = param_groups(model, 0.3, 1e-2, other_lr=1e-2, backbone_lr=1e-3)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # none twice
    assert set(grouped) == {id(p) for p in model.trainable_parameters().values()}  # every trainable one
    assert all(not p.requires_grad for p in model.vision.parameters())  # the vision tower stays frozen


@pytest.mark.parametrize("method", METHODS)
def test_every_method_saves_and_loads_the_same_model(method, tiny_clip_dir, tiny_t5_dir, tmp_path):
    model = tiny(method, tiny_clip_dir, tiny_t5_dir).eval()
    with torch.no_grad():  # trained weights that differ from a fresh model's
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path)
    loaded = VisionLanguageModel.from_pretrained(tmp_path).eval()
    mine, theirs = model.trainable_parameters(), loaded.trainable_parameters()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    inputs = batch(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).loss, loaded(**inputs).loss)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_the_loss_on_a_fixed_batch(method, tiny_clip_dir, tiny_t5_dir):
    model = tiny(method, tiny_clip_dir, tiny_t5_dir)
    inputs = batch(model)
    optimizer = torch.optim.AdamW(param_groups(model, 0.3, 1e-2, other_lr=1e-2, backbone_lr=1e-3))
    losses = []
    for _ in range(8):
        loss = model(**inputs).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.05, losses


def task_split(name, vl_data):
    """The task's test split of its fixture (every task needs one: vl_data builds them, easy-vqa ships its own)."""
    task = get_task(name)
    return task, task.load(task.default_splits[2], None if not task.needs_data_dir else vl_data[name])


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_scores_perfect_predictions_one(name, vl_data):
    task, data = task_split(name, vl_data)
    examples = data.examples[:200]
    scores = task.score({ex.id: task.reference_answer(ex) for ex in examples}, examples)
    bounded = "BLEU-4" if task.metric == "CIDEr" else task.metric  # CIDEr has no ceiling; BLEU's is 1
    assert scores[bounded] == pytest.approx(1.0) and task.metric in scores
    assert task.score({ex.id: "zzz qqq" for ex in examples}, examples)[task.metric] < 0.5


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_declares_what_it_takes(name, vl_data):
    task, data = task_split(name, vl_data)
    assert all(len(ex.image_ids) == task.num_images for ex in data.examples)
    questions = [ex.source.removeprefix(task.prefix).strip() for ex in data.examples]
    assert all(questions) if task.takes_question else not any(questions)


# every registered encoder, and one of each other family: timm, Hugging Face CLIP and SigLIP towers
ENCODERS = {name: {} for name in list_vision_encoders() if "<" not in name}
ENCODERS.update({"timm:test_vit": {"pretrained": False}, "tiny-clip": {}, "tiny-siglip": {}})


def encoder_config(name, tiny_clip_dir, tiny_siglip_dir, **settings):
    encoder = {"tiny-clip": tiny_clip_dir, "tiny-siglip": tiny_siglip_dir}.get(name, name)
    return VisionConfig(encoder=encoder, **{**ENCODERS[name], **settings})


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_signature_changes_with_each_setting(name, tiny_clip_dir, tiny_siglip_dir):
    base = encoder_config(name, tiny_clip_dir, tiny_siglip_dir)
    first, again = create_vision_encoder(base), create_vision_encoder(base)
    assert first.identity() == again.identity()  # the same settings: the same cache
    variants = [dataclasses.replace(base, image_size=64), dataclasses.replace(base, pool_tokens=1)]
    if not name.startswith("timm:"):  # timm's pretrained weights would be a download
        variants.append(dataclasses.replace(base, pretrained=not base.pretrained))
    identities = [create_vision_encoder(v).identity() for v in variants]
    assert all(identity != first.identity() for identity in identities)
    assert first.identity()["encoder"] == base.encoder and first.identity()["feature_dim"] == first.out_dim


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_without_pretrained_weights_is_one_fixed_draw(name, tiny_clip_dir, tiny_siglip_dir):
    config = encoder_config(name, tiny_clip_dir, tiny_siglip_dir, pretrained=False, image_size=32)
    torch.manual_seed(1)
    one = create_vision_encoder(config)
    torch.manual_seed(2)
    other = create_vision_encoder(config)
    pixels = torch.rand(1, 3, 32, 32)
    assert torch.equal(one(pixels), other(pixels))  # cached features of a random tower stay valid


def test_random_and_pretrained_towers_never_share_a_cache(tiny_clip_dir, tmp_path, monkeypatch):
    """The bug this fixed: a tower built without its pretrained weights got the pretrained tower's cache key, so
    training read the other tower's features."""
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path))
    pretrained = create_vision_encoder(VisionConfig(encoder=tiny_clip_dir))
    random_tower = create_vision_encoder(VisionConfig(encoder=tiny_clip_dir, pretrained=False))
    pixels = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(pretrained(pixels), random_tower(pixels))  # pretrained is honoured by HF towers
    cache = open_feature_cache("demo", pretrained)
    cache.build({"a": Image.new("RGB", (32, 32), "red")}, pretrained, progress=False)
    other = open_feature_cache("demo", random_tower)
    assert other.root != cache.root and "a" not in other
    assert "-random-1729-32px-" in default_cache_dir("demo", encoder_signature(random_tower)).name
