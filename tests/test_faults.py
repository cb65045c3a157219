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

from dept_vl import CheckpointError, DePT
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
