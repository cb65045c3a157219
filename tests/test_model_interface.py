"""One interface for both kinds of model (``models.interface.VLModel``): serving several native-VLM runs of one
VLM from one server with mixed batches, conversations served as they are trained, token usage, a native family as
one record, and a run that saves only what its kind uses."""

import json

import pytest
import torch
from PIL import Image

from dept_vl.inference.predict import Predictor
from dept_vl.methods.native import FAMILIES, native_family
from dept_vl.models import NativeVisionLanguageModel, VisionLanguageModel, VLModel
from dept_vl.models.native_vlm import visual_tokens
from dept_vl.serve.adapters import AdapterSet
from dept_vl.serve.app import answer_all, create_app
from dept_vl.serve.inputs import Question
from dept_vl.serve.settings import ServeSettings
from test_native_model import QUESTIONS, native, pictures
from tiny_vlms import FAMILIES as TINY

CONTEXT = (("system", "answer in one word"), ("user", "is there a shape?"), ("assistant", "yes"))


@pytest.fixture(scope="module")
def native_runs(tiny_llava_dir, tmp_path_factory):
    """Two runs of one tiny LLaVA, each with its own trained-looking P, A and B."""
    root = tmp_path_factory.mktemp("native-runs")
    for name, seed in (("a", 1), ("b", 2)):
        model = native(tiny_llava_dir, tasks=["easyvqa"])
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.5)
        torch.nn.init.normal_(model.dept.prompt_embeddings, std=1.0)
        model.save_pretrained(root / name)
    return {name: str(root / name) for name in ("a", "b")}


@pytest.fixture(scope="module")
def served(native_runs):
    adapters = AdapterSet("cpu")
    for name, path in native_runs.items():
        adapters.add(name, path)
    return adapters


def test_both_kinds_are_one_interface():
    assert issubclass(VisionLanguageModel, VLModel) and issubclass(NativeVisionLanguageModel, VLModel)


def test_two_native_runs_of_one_vlm_answer_a_mixed_batch_in_one_pass(served, native_runs):
    a, b = (served.adapters[n].predictor.model for n in ("a", "b"))
    assert b.vlm is a.vlm and b.processor is a.processor  # one copy of the frozen VLM
    passes = []
    original = a.vlm.generate
    a.vlm.generate = lambda *args, **kwargs: passes.append(1) or original(*args, **kwargs)
    names = ["a", "b", "b", "a"]
    questions = [Question([pictures()[i % 2]], QUESTIONS[i % 2], adapter=name) for i, name in enumerate(names)]
    try:
        got = answer_all(served, questions)
    finally:
        del a.vlm.generate
    alone = {name: Predictor(path) for name, path in native_runs.items()}
    want = [alone[name]([pictures()[i % 2]], QUESTIONS[i % 2]) for i, name in enumerate(names)]
    assert got == want and passes == [1]
    assert got[0] != got[1] or got[3] != got[2]  # the two runs do answer differently: each row met its own method


def test_runs_of_different_prompt_lengths_share_one_pass_too(served, native_runs, tiny_llava_dir, tmp_path):
    model = native(tiny_llava_dir, tasks=["easyvqa"], dept={"prompt_length": 2, "r": 3, "max_length": 48})
    torch.manual_seed(3)
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.5)
    torch.nn.init.normal_(model.dept.prompt_embeddings, std=1.0)
    model.save_pretrained(tmp_path / "c")
    served.add("c", str(tmp_path / "c"))
    try:
        passes, vlm = [], served.adapters["c"].predictor.model.vlm
        original = vlm.generate
        vlm.generate = lambda *args, **kwargs: passes.append(1) or original(*args, **kwargs)
        names, runs = ["a", "c", "c", "b"], {**native_runs, "c": str(tmp_path / "c")}
        questions = [Question([pictures()[i % 2]], QUESTIONS[i % 2], adapter=name) for i, name in enumerate(names)]
        got = answer_all(served, questions)
    finally:
        del vlm.generate
        served.remove("c")
    alone = {name: Predictor(path) for name, path in runs.items()}
    assert got == [alone[name]([pictures()[i % 2]], QUESTIONS[i % 2]) for i, name in enumerate(names)]
    assert passes == [1]  # l = 4 and l = 2 in one pass: c's first two slots are padding


def test_the_openai_client_gets_each_native_runs_answer_and_usage(served, native_runs):
    import base64
    import io

    from fastapi.testclient import TestClient
    from openai import OpenAI

    buffer = io.BytesIO()
    pictures()[0].save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    question = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": QUESTIONS[0]}]}]
    chat = [{"role": role, "content": text} for role, text in CONTEXT[:1]] + \
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                      {"type": "text", "text": CONTEXT[1][1]}]},
         {"role": "assistant", "content": CONTEXT[2][1]}, {"role": "user", "content": QUESTIONS[0]}]
    with TestClient(create_app(served, ServeSettings(max_wait_ms=5))) as client:
        openai = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
        for name, path in native_runs.items():
            predictor = Predictor(path)
            reply = openai.chat.completions.create(model=name, messages=question, temperature=0)
            assert reply.choices[0].message.content == predictor([pictures()[0]], QUESTIONS[0])
            model = predictor.model
            assert reply.usage.completion_tokens == model.count_tokens(reply.choices[0].message.content)
            alone = reply.usage.prompt_tokens
            assert alone == model.count_tokens(model.render_prompt(QUESTIONS[0], 1)) + 16  # + its image tokens
            with_context = openai.chat.completions.create(model=name, messages=chat, temperature=0)
            assert with_context.usage.prompt_tokens > alone
            assert with_context.usage.total_tokens == with_context.usage.prompt_tokens + \
                with_context.usage.completion_tokens
            request = predictor.request([pictures()[0]], QUESTIONS[0])
            assert with_context.choices[0].message.content == predictor.answer([request], contexts=[CONTEXT])[0]


def test_the_conversation_reaches_the_model_through_the_training_template(tiny_llava_dir):
    model = native(tiny_llava_dir)
    prompt = model.render_prompt(QUESTIONS[0], 1, CONTEXT)
    assert all(text in prompt for _, text in CONTEXT) and prompt.index(CONTEXT[0][1]) < prompt.index(QUESTIONS[0])
    with_context = model.prepare([QUESTIONS[0]], [pictures()[0]], contexts=[CONTEXT])
    alone = model.prepare([QUESTIONS[0]], [pictures()[0]])
    image = model.processor.tokenizer.convert_tokens_to_ids("<image>")
    assert with_context["input_ids"].shape[1] > alone["input_ids"].shape[1]
    assert (with_context["input_ids"] == image).sum() == (alone["input_ids"] == image).sum() == 16


def test_runs_that_change_the_vlm_or_are_of_another_kind_are_refused_in_one_line(served, tmp_path, tiny_llava_dir):
    from dept_vl.errors import ConfigError

    own = native(tiny_llava_dir, tasks=["easyvqa"], train_projector=True)
    own.save_pretrained(tmp_path / "own")
    with pytest.raises(ConfigError, match="projector.*serve it alone"):
        AdapterSet.add(served, "own", str(tmp_path / "own"))
    assert set(served.adapters) == {"a", "b"}


def test_a_native_family_is_one_record_and_every_one_has_a_tiny_config():
    covered = {native_family(spec.build()).name for spec in TINY.values()}
    assert covered == {family.name for family in FAMILIES}
    for spec in TINY.values():
        config = spec.build().config
        count = visual_tokens(config)
        assert count is None or count == spec.image_tokens, spec.name


def test_a_native_run_saves_only_what_it_uses(tiny_llava_dir, tmp_path):
    native(tiny_llava_dir).save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "dept_vl_config.json").read_text())["model"]
    assert "vision" not in saved and set(saved["text"]) == {"max_length", "max_target_length", "dtype"}
    assert saved["vlm"] == str(tiny_llava_dir)
    assert NativeVisionLanguageModel.from_pretrained(tmp_path / "m").config.vlm == str(tiny_llava_dir)
