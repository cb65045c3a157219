"""Faults a user meets in the wild: a full disk, rotated photos, odd checkpoints, hostile request bodies. Each gives
one clear line (exit 2, or a 4xx with {"error": ...}), never a traceback, a 500 or a silently wrong result."""

import contextlib
import errno
import json
import logging
import os
import pickle
import shutil
import subprocess
import warnings

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dept_vl import CheckpointError, ConfigError, DePT
from dept_vl.cli import main
from dept_vl.models.images import load_image

from conftest import TINY_RECIPE, write_image
from test_dept_checkpoint import write_official_checkpoint
from test_errors import fails


@contextlib.contextmanager
def small_disk(path, kilobytes: int, monkeypatch):
    """A file system of ``kilobytes`` at ``path``: a real tmpfs where this process may mount one; elsewhere a full
    one: every file written under ``path`` (by Python, safetensors or torch) fails with ENOSPC, as the kernel's
    writes would."""
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path)]
    if not os.environ.get("DEPT_VL_TEST_NO_MOUNT") and subprocess.run(mount, capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
        return

    def full(write, name_of=lambda *a, **kw: a[0]):
        def refuse(*args, **kwargs):
            target = name_of(*args, **kwargs)
            if str(target).startswith(str(path)) and (write is not open or "w" in (args[1:2] or ("r",))[0]):
                raise OSError(errno.ENOSPC, "No space left on device", str(target))
            return write(*args, **kwargs)
        return refuse

    import transformers.modeling_utils

    monkeypatch.setattr("builtins.open", full(open))
    monkeypatch.setattr("dept_vl.io.save_file", full(save_file, lambda tensors, name, **kw: name))
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file",
                        full(transformers.modeling_utils.safe_save_file, lambda tensors, name, **kw: name))
    monkeypatch.setattr(torch, "save", full(torch.save, lambda obj, name, *a, **kw: name))
    yield


def test_training_onto_a_full_disk_is_one_line_naming_the_file_system(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    with small_disk(tmp_path / "disk", 64, monkeypatch):
        line = fails(capsys, ["train", "--config", str(tmp_path / "tiny.yaml"), "--output-dir",
                              str(tmp_path / "disk" / "run"), "--cache-dir", str(tmp_path / "cache")],
                     "no space left on", "while writing", str(tmp_path / "disk"))
    assert "free space" in line


def test_a_checkpoint_that_hits_a_full_disk_names_the_last_good_one(tmp_path, capsys, monkeypatch):
    import dept_vl.training.state as state

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    args = ["train", "--config", str(tmp_path / "tiny.yaml"), "--output-dir", str(tmp_path / "run"), "--cache-dir",
            str(tmp_path / "cache"), "--save-every", "2", "--max-steps", "4"]
    real_save, calls = torch.save, []

    def full_on_the_second(obj, path, *a, **kw):  # the disk fills while step 4's checkpoint is written
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(state.torch, "save", full_on_the_second)
    monkeypatch.setattr("dept_vl.io.shutil.disk_usage", lambda _: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1024))
    line = fails(capsys, args, "no space left on", "step-000004", "the last good checkpoint is",
                 str(tmp_path / "run" / "checkpoints" / "step-000002"), "--resume")
    assert "enforce fail" not in line
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0  # once there is space the run resumes from the intact checkpoint
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["steps"] == 4


def bad_official(directory, **state):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING_LORA", "r": 2}))
    torch.save(state, directory / "adapter_model.bin")
    return directory


@pytest.mark.parametrize("state, needle", [
    ({"prompt_embeddings": torch.zeros(8)}, "prompt_embeddings has shape (8,)"),
    ({"prompt_embeddings": torch.zeros(4, 8), "lora_embedding_A": torch.zeros(10, 2)}, "lora_embedding_A without"),
    ({"prompt_embeddings": [1.0, 2.0]}, "prompt_embeddings is list, not a tensor of floats"),
    ({"prompt_embeddings": torch.zeros(4, 8), "lora_embedding_A": torch.zeros(10, 2),
      "lora_embedding_B": torch.zeros(3, 8)}, "do not fit"),
    ({"prompt_embeddings": torch.full((4, 8), float("nan"))}, "holds NaN or inf"),
])
def test_an_odd_official_checkpoint_is_a_checkpoint_error(tmp_path, state, needle):
    with pytest.raises(CheckpointError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        DePT.from_pretrained(bad_official(tmp_path / "ckpt", **state))


def test_a_malicious_pickle_is_refused_in_one_line(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    write_official_checkpoint(tmp_path)
    with open(tmp_path / "adapter_model.bin", "wb") as fh:
        pickle.dump({"prompt_embeddings": Evil()}, fh)
    with pytest.raises(CheckpointError) as caught:
        DePT.from_pretrained(tmp_path)
    message = str(caught.value)
    assert "never runs code from a checkpoint" in message and "\n" not in message
    assert "weights_only=False" not in message and not (tmp_path / "pwned").exists()


def test_a_foreign_format_is_refused_and_a_newer_version_warned_about(tiny_easyvqa_run, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_easyvqa_run / "model", model)
    config = json.loads((model / "dept_vl_config.json").read_text())
    (model / "dept_vl_config.json").write_text(json.dumps({**config, "format": "something-else"}))
    image = write_image(tmp_path / "im.png", 0)
    fails(capsys, ["predict", str(image), "what color?", "--checkpoint", str(model), "--task", "easyvqa"],
          "format 'something-else'", "not a dept-vl checkpoint")
    (model / "dept_vl_config.json").write_text(json.dumps({**config, "version": "99.0"}))
    with pytest.warns(UserWarning, match="written by dept-vl 99.0, newer than this"):
        assert main(["predict", str(image), "what color?", "--checkpoint", str(model), "--task", "easyvqa"]) == 0


def rotated_jpeg(path, orientation=6):
    """An 80 x 40 JPEG whose EXIF orientation 6 says: show it turned a quarter, 40 x 80."""
    image = Image.new("RGB", (80, 40), "red")
    image.paste(Image.new("RGB", (10, 40), "blue"), (0, 0))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)
    return path


def test_exif_rotated_photos_are_read_upright_everywhere(tmp_path):
    from dept_vl.serve.inputs import decode_image

    path = rotated_jpeg(tmp_path / "photo.jpg")
    upright = load_image(path)
    assert upright.size == (40, 80)  # as every viewer shows it
    assert upright.getpixel((20, 5))[2] > 200  # the blue stripe was on the left: now on top
    assert decode_image(path.read_bytes(), "image 1").size == (40, 80)  # the server's bodies, the same path


def test_an_image_over_the_pixel_limit_is_refused_as_the_server_refuses_it(capsys, tiny_easyvqa_run, tmp_path,
                                                                           monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (2000, 1500)).save(path)  # 3 Mpx: between the warning size and twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own DecompressionBombWarning never reaches the user
        fails(capsys, ["predict", str(path), "what color?", "--checkpoint", str(tiny_easyvqa_run)],
              "big.png", "more pixels than allowed")


def test_a_directory_or_a_link_loop_for_an_image_says_so(capsys, tiny_easyvqa_run, tmp_path):
    (tmp_path / "a dir").mkdir()
    fails(capsys, ["predict", str(tmp_path / "a dir"), "what color?", "--checkpoint", str(tiny_easyvqa_run)],
          "is a directory", "a dir")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    fails(capsys, ["predict", str(tmp_path / "loop"), "what color?", "--checkpoint", str(tiny_easyvqa_run)],
          "cannot read image", "loop")


def test_a_deeply_nested_json_body_is_a_400(tiny_easyvqa_run):
    from fastapi.testclient import TestClient

    from dept_vl.inference.predict import Predictor
    from dept_vl.serve.app import create_app

    with TestClient(create_app(Predictor(str(tiny_easyvqa_run)))) as client:
        reply = client.post("/v1/predict", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "nested deeper than 100 levels" in reply.json()["error"]


def test_a_deeply_nested_jsonl_line_is_a_bad_line(tmp_path, capsys, tiny_easyvqa_run):
    (tmp_path / "q.jsonl").write_text("[" * 50_000 + "\n")
    fails(capsys, ["predict", "--input", str(tmp_path / "q.jsonl"), "--checkpoint", str(tiny_easyvqa_run)],
          "line 1", "nested deeper than")


def test_a_client_that_disconnects_mid_body_is_one_log_line(tiny_easyvqa_run, caplog):
    import asyncio

    from dept_vl.inference.predict import Predictor
    from dept_vl.serve.app import create_app

    app = create_app(Predictor(str(tiny_easyvqa_run)))
    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"1000")], "query_string": b"",
        "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}
    messages = iter([{"type": "http.request", "body": b'{"image": "', "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    async def send(_message):
        pass

    with caplog.at_level(logging.INFO, logger="dept_vl.serve"):
        asyncio.run(app(scope, receive, send))
    records = [r for r in caplog.records if r.name.startswith("dept_vl")]
    assert len(records) == 1 and "disconnected" in records[0].getMessage() and records[0].exc_info is None


# ---- the battery of issue 37: own data, native VLMs, runtime adapters, push ---------------------------------------
def _records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _asked(image="im.png", question="what color?", answer="red"):
    return {"image": image, "question": question, "answer": answer}


def data_empty_file(tmp):
    (tmp / "empty.jsonl").write_text("\n \n")
    return tmp / "empty.jsonl", ["empty.jsonl is empty"]


def data_empty_list(tmp):
    (tmp / "data.json").write_text("[]")
    return tmp / "data.json", ["data.json holds no records (an empty list)"]


def data_malformed_json(tmp):
    (tmp / "data.json").write_text('[\n  {"image": "im.png" "question": "q", "answer": "a"}\n]')
    return tmp / "data.json", ["data.json: malformed JSON at line 2, column 22"]


def data_no_known_layout(tmp):
    (tmp / "folder").mkdir()
    (tmp / "folder" / "notes.txt").write_text("x")
    return tmp / "folder", ["folder: a directory of no known data layout", "imagefolder", "train/", "save_to_disk"]


def data_images_without_metadata(tmp):
    (tmp / "folder").mkdir()
    for n in range(2):
        write_image(tmp / "folder" / f"{n}.png", n)
    return tmp / "folder", ["folder: a folder of 2 image(s) but no metadata.jsonl"]


def data_empty_question(tmp):
    records = [_asked(), _asked(question=""), _asked()]
    return _records(tmp / "q.jsonl", records), ["q.jsonl, line 2: no question (missing or empty)", "--skip-bad-lines"]


def data_missing_question(tmp):
    records = [_asked(), _asked(), {"image": "im.png", "answer": "a"}]
    return _records(tmp / "q.jsonl", records), ["q.jsonl, line 3: no question"]


def data_duplicate_llava_ids(tmp):
    chat = [{"from": "human", "value": "<image>\nwhat color?"}, {"from": "gpt", "value": "red"}]
    (tmp / "chats.json").write_text(json.dumps([{"id": "x", "image": "im.png", "conversations": chat}] * 12))
    return tmp / "chats.json", ["chats.json, record 1", "chats.json, record 2", "share the id 'x'"]


def _unreadable(tmp, name, content: bytes):
    (tmp / name).write_bytes(content)
    return _records(tmp / "q.jsonl", [_asked(), _asked(name)]), ["q.jsonl, line 2", name, "--skip-bad-lines"]


def data_truncated_image(tmp):
    whole = write_image(tmp / "whole.png", 1, size=(64, 64)).read_bytes()
    path, needles = _unreadable(tmp, "cut.png", whole[: len(whole) // 2])
    return path, needles + ["truncated or corrupt"]


def data_empty_image(tmp):
    path, needles = _unreadable(tmp, "zero.jpg", b"")
    return path, needles + ["is empty"]


def data_not_an_image(tmp):
    path, needles = _unreadable(tmp, "text.png", b"hello")
    return path, needles + ["is not an image"]


DATA_FAULTS = {name.removeprefix("data_"): f for name, f in list(globals().items()) if name.startswith("data_")}


@pytest.mark.parametrize("case", sorted(DATA_FAULTS))
def test_bad_own_data_is_one_line_naming_file_and_record_and_writes_nothing(case, tmp_path, capsys):
    write_image(tmp_path / "im.png", 0)
    source, needles = DATA_FAULTS[case](tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    fails(capsys, ["train", "--config", str(tmp_path / "tiny.yaml"), "--data", str(source), "--output-dir",
                   str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")], *needles)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_skip_bad_lines_skips_unreadable_images_and_questionless_records(tmp_path, monkeypatch):
    from dept_vl.data.sources import read_source

    for n in range(4):
        write_image(tmp_path / f"{n}.png", n)
    whole = (tmp_path / "0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("L", (200, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 20 000 pixels: over the warning size, so refused
    bad = ["cut.png", "zero.png", "text.png", "bomb.png"]
    records = [_asked(f"{n}.png") for n in range(4)] + [_asked(b) for b in bad] + [_asked("0.png", question="")]
    said = []
    kept = read_source(str(_records(tmp_path / "q.jsonl", records)), skip_bad_lines=True, log=said.append)
    assert [r.where.rsplit(" ", 1)[1] for r in kept] == ["1", "2", "3", "4"]
    assert said[-1].startswith(f"{tmp_path / 'q.jsonl'}: skipped 5 bad record(s)")
    assert [s.split(":")[0] for s in said[:5]] == [f"skipped {tmp_path / 'q.jsonl'}, line {n}" for n in range(5, 10)]
    assert "more pixels than allowed" in said[3] and "no question" in said[4]


def test_a_split_of_a_save_to_disk_directory_reads(tmp_path):
    import datasets

    from dept_vl.data.sources import read_source

    rows = {"image": [Image.new("RGB", (4, 4), c) for c in ("red", "blue")], "question": ["q1", "q2"],
            "answer": ["a1", "a2"]}
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "test": split.select([1])}).save_to_disk(str(tmp_path / "saved"))
    assert [r.question for r in read_source(f"{tmp_path / 'saved'}::test")] == ["q2"]


def _truncated_copy(source, to):
    shutil.copytree(source, to)
    weights = to / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    return to


def vlm_truncated_weights(tmp, llava, llama):
    broken = _truncated_copy(llava, tmp / "cut")
    return broken, [f"{broken / 'model.safetensors'} is corrupt or truncated"]


def vlm_garbage_weights(tmp, llava, llama):
    shutil.copytree(llava, tmp / "garbage")
    (tmp / "garbage" / "model.safetensors").write_bytes(os.urandom(2000))
    return tmp / "garbage", [f"{tmp / 'garbage' / 'model.safetensors'} is corrupt or truncated"]


def vlm_missing_directory(tmp, llava, llama):
    return tmp / "nowhere", [f"the directory {tmp / 'nowhere'} does not exist"]


def vlm_text_only_model(tmp, llava, llama):
    return llama, [f"{llama} is not a vision-language model", "model_type 'llama'", "--backbone"]


VLM_FAULTS = {name.removeprefix("vlm_"): f for name, f in list(globals().items()) if name.startswith("vlm_")}


@pytest.mark.parametrize("case", sorted(VLM_FAULTS))
def test_a_bad_vlm_is_one_line_and_leaves_no_output_directory(case, tmp_path, capsys, tiny_llava_dir, tiny_llama_dir):
    vlm, needles = VLM_FAULTS[case](tmp_path, tiny_llava_dir, tiny_llama_dir)
    line = fails(capsys, ["train", "--vlm", str(vlm), "--task", "easyvqa", "--k-shot", "8", "--test-examples", "0",
                          "--output-dir", str(tmp_path / "run")], *needles)
    assert "Model type should be one of" not in line and "Repo id" not in line
    assert not (tmp_path / "run").exists()  # not even its .lock


def test_a_truncated_backbone_and_a_weight_that_does_not_fit_name_their_file(capsys, tiny_easyvqa_run, tmp_path):
    from safetensors.torch import load_file

    image = write_image(tmp_path / "im.png", 0)
    backbone = _truncated_copy(tiny_easyvqa_run / "backbone", tmp_path / "backbone")
    fails(capsys, ["predict", str(image), "what color?", "--checkpoint", str(tiny_easyvqa_run), "--backbone",
                   str(backbone)], f"{backbone / 'model.safetensors'} is corrupt or truncated")
    model = tmp_path / "model"
    shutil.copytree(tiny_easyvqa_run / "model", model)
    weights = load_file(model / "adapter_model.safetensors")
    weights = {k: torch.zeros(*v.shape[:-1], v.shape[-1] * 2) if "lora_embedding_B" in k else v
               for k, v in weights.items()}
    save_file(weights, model / "adapter_model.safetensors")  # B of another width, as another tool writes it
    fails(capsys, ["predict", str(image), "what color?", "--checkpoint", str(model)],
          f"{model / 'adapter_model.safetensors'}: weight", "lora_embedding_B", "the model expects")


def _message(reply) -> str:
    error = reply.json()["error"]
    return error["message"] if isinstance(error, dict) else error  # OpenAI's routes answer in OpenAI's shape


def test_the_server_refuses_links_out_nul_bytes_and_keyless_requests_and_still_answers(tiny_easyvqa_run, tmp_path,
                                                                                       caplog):
    from fastapi.testclient import TestClient

    from dept_vl.inference.predict import Predictor
    from dept_vl.serve.app import create_app
    from dept_vl.serve.settings import ServeSettings

    pool, key = tmp_path / "pool", {"X-API-Key": "k"}
    (pool / "inside").mkdir(parents=True)
    shutil.copytree(tiny_easyvqa_run / "model", tmp_path / "outside" / "model")
    os.symlink(tmp_path / "outside" / "model", pool / "inside" / "model")  # a run in the pool, its model/ outside
    cases = [("get", "/v1/models", {}, 401, "missing or wrong API key"),
             ("get", "/v1/model", {}, 401, "missing or wrong API key"),
             ("get", "/docs", {}, 401, "missing or wrong API key"),
             ("get", "/openapi.json", {}, 401, "missing or wrong API key"),
             ("get", "/v1/models", {"headers": {"Authorization": "Bearer wrong"}}, 401, "missing or wrong API key"),
             ("post", "/v1/adapters", {"json": {"name": "x", "path": "inside"}, "headers": key}, 403,
              "not a run under the server's adapter directory"),
             ("post", "/v1/adapters", {"json": {"name": "x", "path": "inside\u0000/model"}, "headers": key}, 400,
              "path: a NUL byte is not allowed")]
    settings = ServeSettings(max_wait_ms=5, api_key="k", adapter_dir=str(pool))
    with caplog.at_level(logging.INFO), TestClient(create_app(Predictor(str(tiny_easyvqa_run)), settings)) as client:
        for method, route, kwargs, status, needle in cases:
            reply = getattr(client, method)(route, **kwargs)
            assert (reply.status_code, needle in _message(reply)) == (status, True), (route, reply.text)
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200  # open
        assert [m["id"] for m in client.get("/v1/models", headers=key).json()["data"]] == ["easyvqa"]
        assert client.get("/openapi.json", headers=key).json()["info"]["title"] == "dept-vl"
    assert "Traceback" not in caplog.text and "request failed" not in caplog.text


def test_a_native_server_refuses_an_assembled_run_in_one_line(tiny_llava_dir, tiny_easyvqa_run, tmp_path):
    from dept_vl import ModelConfig
    from dept_vl.inference.predict import Predictor
    from dept_vl.models import NativeVisionLanguageModel
    from dept_vl.serve.adapters import AdapterSet

    NativeVisionLanguageModel(ModelConfig.from_dict({"vlm": str(tiny_llava_dir), "dept": {
        "prompt_length": 2, "r": 2, "max_length": 48}})).save_pretrained(tmp_path / "native")
    adapters = AdapterSet.of(Predictor(str(tmp_path / "native"), task="easyvqa"))
    with pytest.raises(ConfigError, match="its kind is an assembled model, the served one's a native VLM") as caught:
        adapters.add("assembled", str(tiny_easyvqa_run))
    assert "None" not in str(caught.value) and list(adapters.adapters) == ["easyvqa"]


def test_push_with_the_hub_unreachable_is_one_line(tiny_easyvqa_run, capsys, monkeypatch):
    import huggingface_hub
    import huggingface_hub.utils._http as http

    client = getattr(http, "httpx2", None) or getattr(http, "httpx")  # the HTTP client huggingface_hub uses

    def unreachable(self, *args, **kwargs):
        raise client.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", unreachable)
    fails(capsys, ["push", str(tiny_easyvqa_run), "me/easyvqa-dept"], "cannot push to the Hugging Face Hub",
          "me/easyvqa-dept", "Name or service not known", "--stage-only")


def test_staging_a_native_run_on_a_local_vlm_warns_and_takes_its_hub_name(tiny_llava_dir, tmp_path, capsys):
    from dept_vl import ModelConfig
    from dept_vl.models import NativeVisionLanguageModel

    NativeVisionLanguageModel(ModelConfig.from_dict({"vlm": str(tiny_llava_dir), "dept": {
        "prompt_length": 2, "r": 2, "max_length": 48}})).save_pretrained(tmp_path / "native")
    capsys.readouterr()
    assert main(["push", str(tmp_path / "native"), "me/llava-dept", "--stage-only", str(tmp_path / "a")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and str(tiny_llava_dir) in warned[0] and "--base-model" in warned[0]
    assert main(["push", str(tmp_path / "native"), "me/llava-dept", "--stage-only", str(tmp_path / "b"),
                 "--base-model", "llava-hf/llava-1.5-7b-hf"]) == 0
    assert "warning:" not in capsys.readouterr().err
    staged = json.loads((tmp_path / "b" / "dept_vl_config.json").read_text())
    assert staged["model"]["vlm"] == "llava-hf/llava-1.5-7b-hf" and "backbone_relative" not in staged
    assert "llava-hf/llava-1.5-7b-hf" in (tmp_path / "b" / "README.md").read_text()
