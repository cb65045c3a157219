import os

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dept_vl import CheckpointError, ConfigError, InputError, VisionLanguageModel, param_groups, position_ids_from_mask
from dept_vl.models.vl_model import left_align

from conftest import tiny_model_config

COLORS = ["red", "green", "blue", "yellow"]
QUESTIONS = ["what color is the shape?", "color?", "what is the color of this image, please?", "which color"]


def images(n=4):
    return [Image.new("RGB", (40, 30), c) for c in COLORS[:n]]


def generation_inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def train_steps(model, batch, steps=25):
    opt = torch.optim.AdamW(param_groups(model, prompt_lr=0.3, lowrank_lr=1e-2, other_lr=1e-2))
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def test_the_prompt_template_writes_every_input(tiny_clip_dir, tiny_t5_dir):
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, text={"prompt_template": "color {text} ?"}))
    batch = model.prepare(QUESTIONS[:2], images(2), targets=["red", "green"])
    plain = model.text.tokenize([f"color {q} ?" for q in QUESTIONS[:2]], model.config.text.max_length)
    assert torch.equal(batch["input_ids"], plain["input_ids"])  # the template, in training and generation alike
    assert torch.equal(batch["labels"], model.prepare_targets(["red", "green"]))  # the targets are not templated


def test_loss_decreases_and_only_adapter_learns(tiny_clip_dir, tiny_t5_dir):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir))
    assert set(model.trainable_parameters()) == {
        "dept.prompt_embeddings", "dept.lora_embedding_A", "dept.lora_embedding_B", "projection.linear.weight",
        "projection.linear.bias", "projection.norm.weight", "projection.norm.bias", "projection.image_index.weight"}
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch = model.prepare(QUESTIONS, images(), targets=["red circle", "green", "blue", "yellow square"])
    losses = train_steps(model, batch)
    assert losses[-1] < losses[0] - 1.5  # measured: 11.3 -> 9.4 in 25 steps
    assert losses[-1] < min(losses[:10])
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), n
    model.train()
    assert not model.text.model.training and not model.vision.net.training  # dropout stays off


def test_greedy_generate_matches_teacher_forced_argmax(tiny_vlm):
    batch = tiny_vlm.prepare(QUESTIONS, images())
    embeds, mask = tiny_vlm.encoder_inputs(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    gen = tiny_vlm.text.generate(embeds, mask, max_new_tokens=6)
    with torch.no_grad():
        logits = tiny_vlm.text.model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=gen[:, :-1]).logits
    eos = tiny_vlm.text.tokenizer.eos_token_id
    compared = 0
    for row in range(gen.shape[0]):
        for t in range(1, gen.shape[1]):
            assert logits[row, t - 1].argmax().item() == gen[row, t].item()
            compared += 1
            if gen[row, t].item() == eos:
                break
    assert compared >= 4 * gen.shape[0] - 4


def test_batched_generation_equals_one_by_one(tiny_vlm):
    batch = tiny_vlm.prepare(QUESTIONS, images())
    together = tiny_vlm.generate(**batch)
    alone = [tiny_vlm.generate(**tiny_vlm.prepare([q], [im]))[0] for q, im in zip(QUESTIONS, images())]
    assert together == alone and any(together)


def test_dynamic_length_equals_padding_to_max_length(tiny_vlm):
    batch = tiny_vlm.prepare(QUESTIONS, images(), targets=COLORS)
    enc = tiny_vlm.text.tokenizer(QUESTIONS, padding="max_length", max_length=16, return_tensors="pt")
    padded = {**batch, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    assert padded["input_ids"].shape[1] > batch["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(tiny_vlm(**padded).loss, tiny_vlm(**batch).loss)


def test_precomputed_features_equal_pixels(tiny_vlm):
    batch = tiny_vlm.prepare(QUESTIONS, images(), targets=COLORS)
    feats = tiny_vlm.vision(batch["pixel_values"][:, 0])
    with torch.no_grad():
        from_pixels = tiny_vlm(**batch).loss
        from_feats = tiny_vlm(**{**generation_inputs(batch), "pixel_values": None, "image_features": feats,
                                 "labels": batch["labels"]}).loss
    torch.testing.assert_close(from_feats, from_pixels)


def test_save_load_round_trip(tiny_clip_dir, tiny_t5_dir, tmp_path):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir))
    batch = model.prepare(QUESTIONS, images(), targets=COLORS)
    train_steps(model, batch, steps=3)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_model.safetensors", "dept_vl_config.json"]
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == set(model.trainable_parameters())
    loaded = VisionLanguageModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).loss, model(**batch).loss)
    assert loaded.generate(**generation_inputs(batch)) == model.generate(**generation_inputs(batch))


def test_checkpoint_for_another_backbone_is_refused(tiny_vlm, tiny_t5_wide_dir, tmp_path):
    tiny_vlm.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="trained for text width 32, but backbone .* has width 48"):
        VisionLanguageModel.from_pretrained(tmp_path, backbone=tiny_t5_wide_dir)
    with pytest.raises(CheckpointError, match="does not exist"):
        VisionLanguageModel.from_pretrained(tmp_path / "missing")


def test_sequence_longer_than_max_length_is_a_config_error(tiny_clip_dir, tiny_t5_dir):
    with pytest.raises(ConfigError, match=r"17 visual tokens \+ 16 text tokens = 33 exceeds dept.max_length 20"):
        VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, dept={"max_length": 20}))


def test_two_images_per_example(tiny_clip_dir, tiny_t5_dir):
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, max_images=2))
    pairs = [images(2), images(4)[2:]]
    batch = model.prepare(["left is red?", "right is blue?"], pairs, targets=["true", "false"])
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32)
    embeds, mask = model.encoder_inputs(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    assert embeds.shape[1] == 4 + 2 * 17 + batch["input_ids"].shape[1]
    assert torch.isfinite(model(**batch).loss)


def test_bf16_backbone(tiny_clip_dir, tiny_t5_dir):
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, text={"dtype": "bfloat16"}))
    batch = model.prepare(QUESTIONS[:2], images(2), targets=COLORS[:2])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.dept.prompt_embeddings.grad is not None
    assert model.dept.prompt_embeddings.dtype == torch.float32  # adapter stays fp32 (master weights)


def test_a_bf16_checkpoint_reloads_in_bf16(tiny_clip_dir, tiny_t5_dir, tmp_path):
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, text={"dtype": "bfloat16"}))
    model.save_pretrained(tmp_path)
    loaded = VisionLanguageModel.from_pretrained(tmp_path)
    assert loaded.config.text.dtype == "bfloat16" and loaded.text.dtype == torch.bfloat16
    assert torch.equal(loaded.projection.linear.weight, model.projection.linear.weight)


# ---- decoder-only backbones --------------------------------------------------------------------------
def test_left_align():
    embeds = torch.arange(8.0).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    out, out_mask = left_align(embeds, mask)
    assert out[:, :, 0].tolist() == [[0, 1, 2, 3], [6, 7, 4, 5]]
    assert out_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert position_ids_from_mask(out_mask).tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]


@pytest.fixture(scope="module")
def causal_vlm(tiny_clip_dir, tiny_llama_dir):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_llama_dir))
    torch.nn.init.normal_(model.dept.lora_embedding_B)  # make A @ B matter for the position checks
    return model


def test_causal_backbone_learns(causal_vlm):
    assert causal_vlm.text.kind == "causal"
    batch = causal_vlm.prepare(QUESTIONS, images(), targets=["red circle", "green", "blue", "yellow square"])
    losses = train_steps(causal_vlm, batch)
    assert losses[-1] < 0.7 * losses[0]  # measured: 11.1 -> 6.1 in 25 steps


def test_causal_generation_is_padding_invariant_and_matches_forward(causal_vlm):
    batch = causal_vlm.prepare(QUESTIONS, images())
    together = causal_vlm.generate(**batch, max_new_tokens=5)
    alone = [causal_vlm.generate(**causal_vlm.prepare([q], [im]), max_new_tokens=5)[0]
             for q, im in zip(QUESTIONS, images())]
    assert together == alone
    embeds, mask = causal_vlm.encoder_inputs(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    gen = causal_vlm.text.generate(embeds, mask, max_new_tokens=5, min_new_tokens=5)
    full = torch.cat([embeds, causal_vlm.text.embed(gen[:, :-1])], 1)
    full_mask = torch.cat([mask, torch.ones_like(gen[:, :-1])], 1)
    with torch.no_grad():
        logits = causal_vlm.text.model(inputs_embeds=full, attention_mask=full_mask,
                                       position_ids=position_ids_from_mask(full_mask)).logits
    n = embeds.shape[1]
    assert torch.equal(logits[:, n - 1:].argmax(-1), gen)


def test_bart_backbone(tiny_clip_dir, tiny_bart_dir):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_bart_dir))
    assert model.text.kind == "seq2seq"
    batch = model.prepare(QUESTIONS, images(), targets=["red circle", "green", "blue", "yellow square"])
    losses = train_steps(model, batch)
    assert losses[-1] < losses[0] - 1.5  # measured: 10.8 -> 8.6 in 25 steps
    embeds, mask = model.encoder_inputs(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    gen = model.text.generate(embeds, mask, max_new_tokens=5, min_new_tokens=5)
    with torch.no_grad():
        logits = model.text.model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=gen[:, :-1]).logits
    assert torch.equal(logits.argmax(-1), gen[:, 1:])


def test_a_model_moved_with_its_backbone_still_loads(tiny_clip_dir, tiny_t5_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_t5_dir, run / "backbone")
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, str(run / "backbone")))
    model.save_pretrained(run / "model")
    shutil.move(str(run), tmp_path / "moved")  # the saved absolute path is gone; the relative one leads to it
    loaded = VisionLanguageModel.from_pretrained(tmp_path / "moved" / "model")
    assert loaded.config.text.backbone == str(tmp_path / "moved" / "backbone")
    batch = model.prepare(QUESTIONS[:2], images(2))
    assert loaded.generate(**batch) == model.generate(**batch)
    shutil.rmtree(tmp_path / "moved" / "backbone")
    with pytest.raises(CheckpointError, match="its text backbone is missing: neither .*run/backbone nor "
                                              ".*moved/backbone exists; .*--backbone"):
        VisionLanguageModel.from_pretrained(tmp_path / "moved" / "model")
    assert VisionLanguageModel.from_pretrained(tmp_path / "moved" / "model", backbone=tiny_t5_dir).text.hidden_size == 32


def test_a_multi_task_model_gives_each_task_its_prompt(tiny_clip_dir, tiny_t5_dir, tmp_path):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, tasks=["vqa", "caption"]))
    assert model.dept.config.num_prompts == 2 and model.config.num_prompts == 2
    one = model.prepare(QUESTIONS[:2], images(2), task="caption")
    assert one["prompt_ids"] == 1  # a batch of one task: an index, so only that prompt is used
    per_example = model.prepare(QUESTIONS[:2], images(2), task=["vqa", "caption"])
    assert per_example["prompt_ids"].tolist() == [0, 1]
    with pytest.raises(InputError, match=r"a prompt for each of its tasks \(vqa, caption\); name one of them"):
        model.prepare(QUESTIONS[:2], images(2))
    alone = [model.predict([q], [im], task=t)[0] for q, im, t in zip(QUESTIONS[:2], images(2), ["vqa", "caption"])]
    assert model.generate(**per_example) == alone
    model.save_pretrained(tmp_path)
    loaded = VisionLanguageModel.from_pretrained(tmp_path)
    assert loaded.config.tasks == ["vqa", "caption"] and loaded.generate(**per_example) == alone
    shared = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir, tasks=["vqa", "caption"],
                                                   prompt_per_task=False))
    assert shared.dept.config.num_prompts == 1 and "prompt_ids" not in shared.prepare(QUESTIONS[:1], images(1),
                                                                                       task="vqa")
