"""`dept-vl train --vlm DIR`: a native VLM saved with its processor trains, evaluates, predicts, serves and resumes
like the assembled models; its checkpoint is adapter-only and names the VLM."""

import json

import pytest
import torch
from PIL import Image

from dept_vl import ConfigError, ModelConfig, param_groups
from dept_vl.cli import main
from dept_vl.models import NativeVisionLanguageModel, load_model

QUESTIONS = ["what color is the shape?", "is there a circle?"]


def native(tiny_llava_dir, **model):
    data = {"vlm": str(tiny_llava_dir), "dept": {"prompt_length": 4, "r": 2, "max_length": 48},
            "text": {"max_target_length": 4}, **model}
    torch.manual_seed(0)
    return NativeVisionLanguageModel(ModelConfig.from_dict(data))


def pictures():
    return [Image.new("RGB", (40, 40), "red"), Image.new("RGB", (30, 50), "blue")]


def test_inputs_are_the_chat_template_and_labels_the_answer(tiny_llava_dir):
    model = native(tiny_llava_dir)
    batch = model.prepare(QUESTIONS, pictures(), targets=["red", "no"])
    tokenizer = model.processor.tokenizer
    answers = [[t for t in row.tolist() if t != -100] for row in batch["labels"]]
    assert [tokenizer.decode(a) for a in answers] == ["red </s>", "no </s>"]  # the assistant's turn, ended
    assert (batch["input_ids"] == tokenizer.convert_tokens_to_ids("<image>")).sum(1).tolist() == [16, 16]
    assert batch["attention_mask"][1, 0] == 0  # left-padded for a decoder-only language model
    loss = model(**batch).loss
    loss.backward()
    assert set(model.trainable_parameters()) == {"native.dept.prompt_embeddings", "native.dept.lora_embedding_A",
                                                 "native.dept.lora_embedding_B"}
    assert all(p.grad is None for p in model.vlm.parameters())


def test_answers_equal_one_at_a_time_and_save_load_is_exact(tiny_llava_dir, tmp_path):
    model = native(tiny_llava_dir)
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.3)
    together = model.predict(QUESTIONS, pictures())
    alone = [model.predict([q], [p])[0] for q, p in zip(QUESTIONS, pictures())]
    assert together == alone and all(isinstance(a, str) for a in together)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "dept_vl_config.json").read_text())
    assert saved["model"]["vlm"] == str(tiny_llava_dir) and saved["family"] == "LLaVA"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [  # adapter_config.json: PEFT's (tests/test_peft.py)
        "adapter_config.json", "adapter_model.safetensors", "dept_vl_config.json"]
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, NativeVisionLanguageModel) and loaded.predict(QUESTIONS, pictures()) == together


def test_the_projector_trains_only_when_asked_at_its_own_rate(tiny_llava_dir):
    model = native(tiny_llava_dir, train_projector=True)
    trainable = set(model.trainable_parameters())
    assert {"native.model.model.multi_modal_projector.linear_1.weight"} <= trainable
    assert not any("vision_tower" in n or "language_model" in n for n in trainable)  # the rest stays frozen
    groups = {g["name"]: g for g in param_groups(model, 0.3, 1e-2, other_lr=1e-4, backbone_lr=1e-5)}
    assert groups["other"]["lr"] == 1e-4 and "backbone" not in groups
    with pytest.raises(ConfigError, match="train_projector is for a native VLM"):
        ModelConfig(train_projector=True)


def test_lora_on_a_native_vlm_adapts_its_language_model_only(tiny_llava_dir):
    model = native(tiny_llava_dir, method="lora", lora={"r": 2})
    trainable = list(model.trainable_parameters())
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    batch = model.prepare(QUESTIONS, pictures(), targets=["red", "no"])
    model(**batch).loss.backward()
    assert model.predict(QUESTIONS[:1], pictures()[:1])


def test_train_eval_predict_resume_from_the_command_line(tiny_llava_dir, tmp_path, capsys):
    import easy_vqa

    run = tmp_path / "run"
    args = ["train", "--vlm", str(tiny_llava_dir), "--task", "easyvqa", "--k-shot", "32", "--batch-size", "8",
            "--test-examples", "8", "--output-dir", str(run), "--set", "model.dept.max_length=48",
            "--no-tensorboard", "--save-every", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main(args + ["--max-steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["train"]["steps"] == 2 and 0.0 <= first["test"]["accuracy"] <= 1.0
    assert main(args + ["--max-steps", "4", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 4
    assert main(["eval", "--checkpoint", str(run), "--limit", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["examples"] == 6
    image = easy_vqa.get_test_image_paths()[0]
    assert main(["predict", image, "what color is the shape?", "--checkpoint", str(run)]) == 0
    assert capsys.readouterr().out.strip() != ""
    saved = json.loads((run / "model" / "dept_vl_config.json").read_text())
    assert saved["model"]["vlm"] == str(tiny_llava_dir) and saved["backbone_relative"]


def test_a_directory_that_is_not_a_vlm_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--vlm", str(tmp_path / "empty"), "--task", "easyvqa", "--output-dir",
                 str(tmp_path / "run")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"dept-vl: error: cannot load the vision-language model {str(tmp_path / 'empty')!r}")


def test_serve_answers_a_native_run_as_predict_does(tiny_llava_dir, tmp_path):
    import base64
    import io
    import json

    from fastapi.testclient import TestClient

    from dept_vl.inference.predict import Predictor
    from dept_vl.serve.app import create_app
    from dept_vl.serve.inputs import Sampling
    from dept_vl.serve.settings import ServeSettings
    from test_serve_adapters import sampled_alone

    model = native(tiny_llava_dir)
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.3)
    model.save_pretrained(tmp_path / "m")
    predictor = Predictor(str(tmp_path / "m"), task="easyvqa")
    buffer = io.BytesIO()
    pictures()[0].save(buffer, format="PNG")
    with TestClient(create_app(predictor, ServeSettings(max_wait_ms=5))) as client:
        answer = client.post("/v1/predict", json={"image": base64.b64encode(buffer.getvalue()).decode(),
                                                  "question": QUESTIONS[0]})
        described = client.get("/v1/model").json()
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        message = [{"role": "user", "content": [{"type": "text", "text": QUESTIONS[0]},
                                                {"type": "image_url", "image_url": {"url": url}}]}]
        short, sampled = (client.post("/v1/chat/completions", json={
            "model": described["adapters"][0]["name"], "messages": message, "max_tokens": 1, **extra}).json()
            for extra in ({}, {"temperature": 1.5, "seed": 3}))
        events = client.post("/v1/chat/completions", json={"model": described["adapters"][0]["name"],
                                                           "messages": message, "stream": True}).text.split("\n\n")
    pieces = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events if e.startswith("data: {")]
    pieces = [piece for piece in pieces if piece]
    assert len(pieces) > 1 and "".join(pieces) == predictor([pictures()[0]], QUESTIONS[0])  # token by token
    assert answer.status_code == 200 and answer.json()["answer"] == predictor([pictures()[0]], QUESTIONS[0])
    request = [predictor.request([pictures()[0]], QUESTIONS[0])]
    assert len(predictor.answer(request)[0].split()) > 1  # its own answers are longer than one token: max_tokens
    assert short["choices"][0]["message"]["content"] == predictor.answer(request, max_new_tokens=1)[0]  # is kept
    expected = sampled_alone(predictor, pictures()[0], QUESTIONS[0], Sampling(1.5, seed=3), max_new_tokens=1)
    assert sampled["choices"][0]["message"]["content"] == expected
    assert described["text_backbone"] == described["vision_encoder"] == tiny_llava_dir.name


def test_budget_reads_a_vlms_width_and_image_tokens(tmp_path, capsys):
    """LLaVA-1.5 at 336 px: 576 image tokens per image, d = 4096 (its config alone is read: no weights)."""
    import transformers as T

    config = T.LlavaConfig(vision_config=T.CLIPVisionConfig(image_size=336, patch_size=14),
                           text_config=T.LlamaConfig(hidden_size=4096))
    config.save_pretrained(tmp_path / "llava-1.5")
    assert main(["budget", "--vlm", str(tmp_path / "llava-1.5"), "--text-tokens", "64", "--m", "100"]) == 0
    out = capsys.readouterr()
    assert "576 image tokens per image; s = 576 x 1 + 64 = 640" in out.err
    rows = [line.split() for line in out.out.splitlines()[1:]]
    d, s = 4096, 640
    r = 40 * d // (s + d)  # l = 60: the largest r with l d + s r + r d <= m d
    assert rows[4][:3] == ["60", str(r), f"{60 * d + s * r + r * d:,}"] and r == 34


def test_bench_a_native_vlm_shape(tmp_path, capsys):
    args = ["bench", "--vlm", "tiny-vlm", "--batch-size", "2", "--text-length", "6", "--answer-length", "2",
            "--prompt-length", "4", "--r", "2", "--max-length", "48", "--steps", "1", "--warmup", "0", "--paired", "2",
            "--output-dir", str(tmp_path)]
    assert main(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert list(rows) == ["pt", "dept", "adept", "lora", "bare"] and report["visual_tokens"] == 4
    assert abs(rows["pt"]["trainable_params"] - rows["dept"]["trainable_params"]) < 64  # DePT's budget, to a token
    assert all(row["peak_mem_mb"] > 0 for row in rows.values())  # each method's memory in a fresh process, not 0.0
    assert rows["dept"]["train_gflops"] < rows["pt"]["train_gflops"]  # the shorter sequence
    pair = report["paired"][0]
    assert (pair["a"], pair["b"]) == ("dept", "pt") and 0 < pair["flops_ratio"] < 1
    assert "counted FLOPs" in capsys.readouterr().out
