"""Many adapters on one backbone: a mixed batch gives each question its adapter's answer (what `dept-vl predict`
gives), runs on another backbone or of a backbone-changing method are refused, the OpenAI-compatible API answers
the official `openai` client, and adapters come and go at runtime."""

import base64
import io
import json
import shutil

import pytest
import torch
from PIL import Image

from dept_vl.cli import main
from dept_vl.errors import ConfigError
from dept_vl.inference.predict import Predictor
from dept_vl.serve.adapters import AdapterSet
from dept_vl.serve.app import answer_all, create_app
from dept_vl.serve.inputs import Question, Sampling
from dept_vl.serve.settings import ServeSettings

from conftest import TINY_RECIPE

QUESTIONS = ["what color is the shape?", "what shape is in the image?", "is there a circle?", "is the shape red?"]


def train_run(root, name, *args):
    (root / "tiny.yaml").write_text(TINY_RECIPE)
    assert main(["train", "--config", str(root / "tiny.yaml"), "--output-dir", str(root / name), "--cache-dir",
                 str(root / "cache"), "--max-steps", "12", "--test-examples", "2", *args]) == 0
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_easyvqa_run):
    """Four runs: three on the same frozen random T5 (DePT l = 4, DePT l = 7, prompt tuning) and one LoRA run."""
    root = tmp_path_factory.mktemp("adapter-runs")
    return {"a": tiny_easyvqa_run, "b": train_run(root, "b", "--set", "model.dept.prompt_length=7"),
            "pt": train_run(root, "pt", "--method", "pt"),
            "lora": train_run(root, "lora", "--method", "lora", "--set", "model.lora.r=2")}


@pytest.fixture(scope="module")
def served(runs):
    adapters = AdapterSet("cpu")
    for name in ("a", "b", "pt"):
        adapters.add(name, str(runs[name]))
    return adapters


def images(n=4):
    import easy_vqa

    return list(easy_vqa.get_test_image_paths().values())[:n]


def test_a_mixed_batch_answers_each_question_as_its_adapter_does(served, runs):
    alone = {name: Predictor(str(runs[name])) for name in ("a", "b", "pt")}
    names = ["a", "b", "pt", "b", "a", "pt"]
    questions = [Question([Image.open(images()[i % 4]).convert("RGB")], QUESTIONS[i % 4], adapter=name)
                 for i, name in enumerate(names)]
    got = answer_all(served, questions)
    want = [alone[name]([images()[i % 4]], QUESTIONS[i % 4]) for i, name in enumerate(names)]
    assert got == want
    prompts = {name: a.predictor.model.dept.prompt_length for name, a in served.adapters.items()}
    assert len(set(prompts.values())) == 3  # three prompt lengths in one batch (pt: its m tokens)
    assert served.adapters["b"].predictor.model.text is served.adapters["a"].predictor.model.text  # one backbone


def sampled_alone(predictor, image, question, sampling: Sampling, **options) -> str:
    """What ``predict`` samples for one question with ``sampling``'s seed (``options``: more of generate's)."""
    with torch.random.fork_rng():
        torch.manual_seed(sampling.seed)
        return predictor.answer([predictor.request([image], question)], **sampling.options(), **options)[0]


def test_sampled_questions_are_sampled_by_their_seed_and_leave_greedy_ones_alone(served, runs):
    alone = {name: Predictor(str(runs[name])) for name in ("a", "pt")}
    picture = Image.open(images()[0]).convert("RGB")
    hot = [Sampling(2.0, 1.0, seed) for seed in range(4)]
    questions = [Question([picture], QUESTIONS[0], adapter="a", sampling=s) for s in hot]
    questions += [Question([picture], QUESTIONS[0], adapter=name) for name in ("a", "pt")]
    questions.append(Question([picture], QUESTIONS[0], adapter="pt", sampling=Sampling(0.7, 0.9, 11)))
    got = answer_all(served, questions)
    assert got[:4] == [sampled_alone(alone["a"], picture, QUESTIONS[0], s) for s in hot]
    assert len(set(got[:4])) > 1  # sampled at temperature 2: not the greedy answer every time
    assert got[4:6] == [alone[name]([picture], QUESTIONS[0]) for name in ("a", "pt")]  # greedy as before
    assert got[6] == sampled_alone(alone["pt"], picture, QUESTIONS[0], Sampling(0.7, 0.9, 11))
    assert answer_all(served, questions[:1]) == got[:1]  # a seeded answer does not depend on its batch-mates


def test_runs_that_cannot_share_the_backbone_are_refused_in_one_line(served, runs, tmp_path):
    with pytest.raises(ConfigError, match="method 'lora' changes the backbone itself"):
        served.add("lora", str(runs["lora"]))
    other = train_run(tmp_path, "wide", "--set", "model.text.random.d_model=48")
    with pytest.raises(ConfigError, match=f"{other} sits on another backbone than {runs['a']}"):
        served.add("wide", str(other))
    assert set(served.adapters) == {"a", "b", "pt"}


@pytest.fixture
def client(served, tmp_path):
    from fastapi.testclient import TestClient

    for name in ("b",):
        shutil.copytree(served.adapters[name].source, tmp_path / "pool" / name, symlinks=True)
    with TestClient(create_app(served, ServeSettings(max_wait_ms=5, api_key="secret",
                                                     adapter_dir=str(tmp_path / "pool")))) as c:
        yield c


def data_url(path) -> str:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_openai_client_gets_each_adapters_answer(client, served, runs):
    from openai import OpenAI

    openai = OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=client)
    assert [m.id for m in openai.models.list().data] == ["a", "b", "pt"]
    for name in ("a", "b", "pt"):
        message = [{"role": "user", "content": [{"type": "text", "text": QUESTIONS[0]},
                                                {"type": "image_url", "image_url": {"url": data_url(images()[0])}}]}]
        reply = openai.chat.completions.create(model=name, messages=message, max_tokens=4, temperature=0)
        expected = Predictor(str(runs[name]))([images()[0]], QUESTIONS[0])
        assert reply.choices[0].message.content == expected and reply.model == name
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in openai.chat.completions.create(
            model=name, messages=message, stream=True))
        assert streamed == expected
    sampled = openai.chat.completions.create(model="a", messages=message, temperature=1.5, top_p=0.9, seed=5)
    picture = Image.open(images()[0]).convert("RGB")
    assert sampled.choices[0].message.content == sampled_alone(Predictor(str(runs["a"])), picture, QUESTIONS[0],
                                                               Sampling(1.5, 0.9, 5))
    settings = dict(model="a", messages=message, max_tokens=4, temperature=1.5, seed=1)
    whole = openai.chat.completions.create(**settings).choices[0].message.content
    pieces = [chunk.choices[0].delta.content for chunk in openai.chat.completions.create(**settings, stream=True)]
    pieces = [piece for piece in pieces if piece]
    assert len(whole.split()) == 3 and "".join(pieces) == whole  # streamed as generated: a piece per word
    assert pieces == [whole.split()[0]] + [" " + word for word in whole.split()[1:]]


def test_a_batch_streams_each_row_to_its_own_sink(word_tokenizer):
    from dept_vl.serve.streaming import RowStreamer, rest_of

    got = {0: [], 2: []}
    streamer = RowStreamer(word_tokenizer, [got[0].append, None, got[2].append])
    streamer.put(torch.tensor([[0], [0], [0]]))  # the prompt / the decoder's start: not part of an answer
    ids = {word: word_tokenizer.convert_tokens_to_ids(word) for word in ("red", "circle", "yes")}
    for step in (["red", "yes", "yes"], ["circle", "yes", "</s>"], ["</s>", "yes", "<pad>"]):
        streamer.put(torch.tensor([ids.get(word) or word_tokenizer.convert_tokens_to_ids(word) for word in step]))
    streamer.end()
    assert got == {0: ["red", " circle"], 2: ["yes"]}  # the row without a sink was never decoded
    assert rest_of("red circle", "red") == " circle" and rest_of("blue", "red") == ""


def test_openai_errors_have_openais_shape(client):
    import openai as sdk

    openai = sdk.OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=client)
    message = [{"role": "user", "content": [{"type": "text", "text": "q"},
                                            {"type": "image_url", "image_url": {"url": data_url(images()[0])}}]}]
    with pytest.raises(sdk.NotFoundError, match="does not exist: this server serves a, b, pt"):
        openai.chat.completions.create(model="nope", messages=message)
    with pytest.raises(sdk.BadRequestError, match="temperature must be a number from 0 to 2, got 3"):
        openai.chat.completions.create(model="a", messages=message, temperature=3)
    with pytest.raises(sdk.BadRequestError, match="top_p must be a number above 0 up to 1, got 0"):
        openai.chat.completions.create(model="a", messages=message, temperature=0.5, top_p=0)
    with pytest.raises(sdk.BadRequestError, match="n must be 1"):
        openai.chat.completions.create(model="a", messages=message, n=2)
    with pytest.raises(sdk.BadRequestError, match="only data URLs"):
        openai.chat.completions.create(model="a", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}])
    with pytest.raises(sdk.AuthenticationError):
        openai.with_options(api_key="wrong").chat.completions.create(model="a", messages=message)
    raw = client.post("/v1/chat/completions", json={"model": "a", "messages": []},
                      headers={"Authorization": "Bearer secret"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}


def test_predict_takes_an_adapter_and_the_page_offers_them(client, runs):
    with open(images()[1], "rb") as fh:
        reply = client.post("/v1/predict", files={"image": ("a.png", fh)}, data={"question": QUESTIONS[1],
                            "adapter": "pt"}, headers={"X-API-Key": "secret"})
    assert reply.json()["answer"] == Predictor(str(runs["pt"]))([images()[1]], QUESTIONS[1])
    model = client.get("/v1/model", headers={"X-API-Key": "secret"}).json()
    assert [a["name"] for a in model["adapters"]] == ["a", "b", "pt"] and model["adapters_at_runtime"]
    assert 'id="adapter"' in client.get("/").text
    unknown = client.post("/v1/predict", json={"image": data_url(images()[0]).split(",")[1], "question": "q",
                                                "adapter": "zzz"}, headers={"X-API-Key": "secret"})
    assert unknown.status_code == 404 and "serves a, b, pt" in unknown.json()["error"]
    with open(images()[1], "rb") as fh:
        sampled = client.post("/v1/predict", files={"image": ("a.png", fh)}, headers={"X-API-Key": "secret"},
                              data={"question": QUESTIONS[1], "temperature": "1.5", "seed": "2"})
    picture = Image.open(images()[1]).convert("RGB")
    assert sampled.json()["answer"] == sampled_alone(Predictor(str(runs["a"])), picture, QUESTIONS[1],
                                                     Sampling(1.5, 1.0, 2))
    refused = client.post("/v1/predict", json={"image": data_url(images()[0]).split(",")[1], "question": "q",
                                               "temperature": "hot"}, headers={"X-API-Key": "secret"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "temperature must be a number from 0 to 2, got 'hot'"


def test_adapters_are_loaded_and_removed_at_runtime_within_the_allowed_directory(client, served):
    key = {"X-API-Key": "secret"}
    assert client.post("/v1/adapters", json={"name": "b2", "path": "b"}).status_code == 401  # behind the key
    for path in ("../a", "/etc", "b/../../x"):
        refused = client.post("/v1/adapters", json={"name": "x", "path": path}, headers=key)
        assert refused.status_code == 403 and "adapter directory" in refused.json()["error"]
    added = client.post("/v1/adapters", json={"name": "b2", "path": "b"}, headers=key)
    assert added.status_code == 200 and added.json()["name"] == "b2" and "b2" in served.adapters
    assert client.delete("/v1/adapters/b2", headers=key).json()["adapters"] == ["a", "b", "pt"]
    assert client.delete("/v1/adapters/b2", headers=key).status_code == 404
