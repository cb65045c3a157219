"""Every failure a user can cause: one clear line on stderr and exit code 2 (no traceback), or it just works."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from dept_vl.cli import main

from conftest import TINY_RECIPE, unwritable, write_image


@pytest.fixture(scope="module")
def run_dir(tiny_easyvqa_run):
    return tiny_easyvqa_run  # read only: tests that change a run copy its model/ first


def fails(capsys, argv, *needles):
    """Run the CLI in-process; it must exit 2, its stderr ending in one 'dept-vl: error:' line (after any progress
    lines) that holds every needle, with no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("dept-vl: error: ") and err.count("dept-vl: error") == 1, lines[-3:]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


def predict(run_dir, image, question="what color is the shape?"):
    return ["predict", str(image), question, "--checkpoint", str(run_dir)]


# ---- images ---------------------------------------------------------------------------------------------------
def test_bad_image_files(capsys, run_dir, tmp_path):
    messages = [fails(capsys, predict(run_dir, tmp_path / "missing.png"), "image not found", "missing.png")]
    (tmp_path / "folder.png").mkdir()
    messages.append(fails(capsys, predict(run_dir, tmp_path / "folder.png"), "is a directory"))
    (tmp_path / "text.png").write_text("not an image at all")
    messages.append(fails(capsys, predict(run_dir, tmp_path / "text.png"), "cannot read image", "text.png"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    messages.append(fails(capsys, predict(run_dir, tmp_path / "empty.jpg"), "cannot read image", "empty.jpg"))
    whole = write_image(tmp_path / "whole.png", 0, size=(64, 64)).read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    messages.append(fails(capsys, predict(run_dir, tmp_path / "truncated.png"), "cannot read image", "truncated.png"))
    assert len(set(messages)) == 5 and all(str(tmp_path) in m for m in messages)  # each names its own file


def test_decompression_bomb_is_refused_clearly(capsys, run_dir, tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (2000, 2000)).save(path)  # stands in for 20000 x 20000 with a 100x lower limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    line = fails(capsys, predict(run_dir, path), "cannot read image", "huge.png", "decompression bomb")
    assert "4000000 pixels" in line  # the size that was refused is named


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA", "1"])
def test_unusual_image_modes_work(capsys, run_dir, tmp_path, mode):
    path = tmp_path / f"im.{'jpg' if mode == 'CMYK' else 'png'}"
    if mode == "I;16":
        image = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
        assert image.mode == "I;16"
        image.save(path)
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).convert(mode).save(path)
    assert main(predict(run_dir, path)) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


# ---- questions ------------------------------------------------------------------------------------------------
def test_questions(capsys, run_dir, tmp_path, caplog):
    image = write_image(tmp_path / "im.png", 1)
    fails(capsys, predict(run_dir, image, ""), "needs a question")
    fails(capsys, predict(run_dir, image, "   "), "needs a question")
    assert main(predict(run_dir, image, "¿qué color tiene la forma? 形は何色")) == 0
    with caplog.at_level("WARNING", logger="dept_vl"):
        assert main(predict(run_dir, image, " ".join(["what"] * 200))) == 0
    assert "truncated to max_length 16 (said once" in caplog.text


# ---- data -----------------------------------------------------------------------------------------------------
def test_bad_data(capsys, tmp_path, vl_data, monkeypatch):
    import shutil

    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "cache"))
    vqa = tmp_path / "vqa"
    shutil.copytree(vl_data["vqa"], vqa, symlinks=True)
    (vqa / "v2_mscoco_val2014_annotations.json").unlink()
    base = ["eval", "--checkpoint", str(tmp_path), "--task"]
    fails(capsys, ["features", "--task", "vqa", "--data-dir", str(vqa), "--split", "val"],
          "missing data file", "v2_mscoco_val2014_annotations.json")
    (vqa / "v2_mscoco_val2014_annotations.json").write_text('{"annotations": [')
    fails(capsys, ["features", "--task", "vqa", "--data-dir", str(vqa), "--split", "val"], "malformed JSON",
          "line 1")
    nlvr = tmp_path / "nlvr2"
    shutil.copytree(vl_data["nlvr2"], nlvr, symlinks=True)
    lines = (nlvr / "dev.json").read_text().splitlines()
    (nlvr / "dev.json").write_text("\n".join([lines[0], "{broken", lines[1]]) + "\n")
    fails(capsys, ["features", "--task", "nlvr2", "--data-dir", str(nlvr), "--split", "dev"], "dev.json, line 2",
          "--skip-bad-lines")
    (nlvr / "dev.json").write_text('{"identifier": "dev-1-0-0", "label": "True"}\n')
    fails(capsys, ["features", "--task", "nlvr2", "--data-dir", str(nlvr), "--split", "dev"], "line 1",
          "no field 'sentence'")
    (nlvr / "dev.json").write_text('{"identifier": "dev-77-0-0", "sentence": "x", "label": "True"}\n')
    fails(capsys, ["features", "--task", "nlvr2", "--data-dir", str(nlvr), "--split", "dev"], "dev-77-0-0",
          "dev-77-0-img0.png does not exist")
    (nlvr / "dev.json").write_text("\n")
    fails(capsys, ["features", "--task", "nlvr2", "--data-dir", str(nlvr), "--split", "dev"], "has no examples")
    fails(capsys, base + ["vqa"], "dept_vl_config.json")


def test_skip_bad_lines_counts_them(caplog, tmp_path, vl_data):
    import shutil

    nlvr = tmp_path / "nlvr2"
    shutil.copytree(vl_data["nlvr2"], nlvr, symlinks=True)
    lines = (nlvr / "train.json").read_text().splitlines()
    (nlvr / "train.json").write_bytes("\n".join(lines + ["{bad", "also bad"]).encode() + b'\n{"sentence": "caf\xe9"}\n')
    (tmp_path / "r.yaml").write_text(TINY_RECIPE.replace("easyvqa, k_shot: 48", "nlvr2, k_shot: 0"))
    code = main(["train", "--config", str(tmp_path / "r.yaml"), "--data-dir", str(nlvr), "--skip-bad-lines",
                 "--set", "model.max_images=2", "--max-steps", "1", "--output-dir", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache"), "--batch-size", "2"])
    assert code == 0 and "train.json: skipped 3 malformed line(s)" in caplog.text
    assert f"train.json, line {len(lines) + 3}: not UTF-8 text" in caplog.text


# ---- config and command line ------------------------------------------------------------------------------------
def test_bad_config(capsys, tmp_path):
    fails(capsys, ["train", "--task", "vqaa"], "unknown task 'vqaa'", "did you mean 'vqa'")
    fails(capsys, ["train", "--task", "easyvqa", "--prompt-lr", "0"], "prompt_lr must be > 0")
    fails(capsys, ["train", "--task", "easyvqa", "--set", "model.dept.r=-1"], "r must be an integer >= 0")
    fails(capsys, ["train", "--task", "easyvqa", "--set", "model.dept.prompt_length=0"], "prompt_length")
    fails(capsys, ["train", "--task", "easyvqa", "--set", "model.method=adapter"], "unknown method 'adapter'")
    fails(capsys, ["train", "--task", "easyvqa", "--set", "model.text.backbone=/no/such-model",
                   "--output-dir", str(tmp_path / "run"), "--k-shot", "4", "--cache-dir", str(tmp_path / "c")],
          "cannot load text backbone '/no/such-model'")
    (tmp_path / "typo.yaml").write_text("train:\n  batch_sise: 4\n")
    fails(capsys, ["train", "--config", str(tmp_path / "typo.yaml")], "train.batch_sise", "did you mean 'batch_size'")
    (tmp_path / "typo.yaml").write_text("model:\n  dept: {rank: 4}\n")
    fails(capsys, ["train", "--config", str(tmp_path / "typo.yaml")], "model.dept.rank")
    fails(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], "config file not found")
    with pytest.raises(SystemExit) as exit_info:  # argparse: its own usage line, exit 2
        main(["train", "--method", "adapter"])
    assert exit_info.value.code == 2


# ---- checkpoints ----------------------------------------------------------------------------------------------
def test_bad_checkpoints(capsys, run_dir, tmp_path, tiny_t5_wide_dir):
    import shutil

    image = write_image(tmp_path / "im.png", 2)
    fails(capsys, predict(tmp_path / "nothing-here", image), "does not exist")
    (tmp_path / "empty").mkdir()
    fails(capsys, predict(tmp_path / "empty", image), "no dept_vl_config.json")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "model", broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    fails(capsys, predict(broken, image), "corrupt or truncated")
    config = json.loads((run_dir / "model" / "dept_vl_config.json").read_text())
    config["model"]["dept"]["max_length"] = 48  # A trained for s = 24 does not fit s = 48
    other = tmp_path / "other"
    shutil.copytree(run_dir / "model", other)
    (other / "dept_vl_config.json").write_text(json.dumps(config))
    fails(capsys, predict(other, image), "lora_embedding_A", "(24, 2)", "(48, 2)")
    fails(capsys, predict(run_dir, image) + ["--backbone", tiny_t5_wide_dir], "trained for text width 32",
          "has width 48")


# ---- the table: each case makes its bad input and names what the one-line error must say ----------------------
def _tamper(path, pattern: bytes):
    """Overwrite a safetensors file's tensor bytes (its header kept, its size unchanged) with ``pattern``."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start:] = (pattern * len(raw))[: len(raw) - start]
    path.write_bytes(bytes(raw))


def _copy_model(run_dir, to):
    import shutil

    shutil.copytree(run_dir / "model", to)
    return to


def _jsonl(tmp, lines: list[bytes]):
    path = tmp / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _predict_input(run_dir, path):
    return ["predict", "--input", str(path), "--checkpoint", str(run_dir)]


def case_jsonl_not_utf8(tmp, run_dir, image, stack):
    path = _jsonl(tmp, [json.dumps({"image": str(image), "question": "what?"}).encode(), b'{"question": "caf\xe9"}'])
    return _predict_input(run_dir, path), ["in.jsonl, line 2", "not UTF-8"]


def case_question_not_a_string(tmp, run_dir, image, stack):
    path = _jsonl(tmp, [json.dumps({"image": str(image), "question": 42}).encode()])
    return _predict_input(run_dir, path), ["in.jsonl, line 1", "'question' must be a string, got an integer 42"]


def case_line_without_question(tmp, run_dir, image, stack):
    path = _jsonl(tmp, [json.dumps({"image": str(image), "question": "what?"}).encode(),
                        json.dumps({"image": str(image)}).encode()])
    return _predict_input(run_dir, path), ["in.jsonl, line 2", "needs a question", "--skip-bad-lines"]


def case_image_url(tmp, run_dir, image, stack):
    return predict(run_dir, "https://example.com/cat.jpg"), ["https://example.com/cat.jpg", "download it first"]


def case_output_dir_is_a_file(tmp, run_dir, image, stack):
    (tmp / "file").write_text("x")
    return _train(tmp, tmp / "file"), [str(tmp / "file"), "is a file"]


def case_output_dir_unwritable(tmp, run_dir, image, stack):
    locked = stack.enter_context(unwritable(tmp / "locked"))
    return _train(tmp, locked / "run"), [str(locked / "run"), "cannot write", "--output-dir"]


def case_eval_run_unwritable(tmp, run_dir, image, stack):
    model = stack.enter_context(unwritable(_copy_model(run_dir, tmp / "shared-with-me")))  # a save_pretrained dir
    return ["eval", "--checkpoint", str(model), "--limit", "2"], [str(model / "eval"), "--output-dir"]


def case_home_unwritable(tmp, run_dir, image, stack):
    home = stack.enter_context(unwritable(tmp / "home"))
    stack.enter_context(pytest.MonkeyPatch.context()).setenv("HOME", str(home))
    os.environ.pop("DEPT_VL_CACHE", None)
    return _train(tmp, tmp / "run", cache=False), [str(home / ".cache" / "dept-vl"), "DEPT_VL_CACHE"]


def case_recipe_not_utf8(tmp, run_dir, image, stack):
    (tmp / "r.yaml").write_bytes(b"train: {max_steps: 3}\n# r\xe9sum\xe9\n")
    return ["train", "--config", str(tmp / "r.yaml")], ["r.yaml", "not UTF-8"]


def case_data_json_not_utf8(tmp, run_dir, image, stack):
    (tmp / "gqa").mkdir()
    (tmp / "gqa" / "testdev_balanced_questions.json").write_bytes(b'{"q1": {"question": "caf\xe9"}}')
    return (["features", "--task", "gqa", "--data-dir", str(tmp / "gqa"), "--split", "testdev"],
            ["testdev_balanced_questions.json", "not UTF-8"])


def case_run_already_there(tmp, run_dir, image, stack):
    return _train(tmp, run_dir), [str(run_dir), "already holds a run", "--resume", "--overwrite"]


def case_adapter_nan(tmp, run_dir, image, stack):
    from safetensors.torch import load_file, save_file

    model = _copy_model(run_dir, tmp / "nan")
    weights = {k: v.fill_(float("nan")) for k, v in load_file(model / "adapter_model.safetensors").items()}
    save_file(weights, model / "adapter_model.safetensors")  # well formed, no checksum: as another tool writes it
    return predict(model, image), ["adapter_model.safetensors", "NaN", "checkpoints/"]


def case_adapter_changed(tmp, run_dir, image, stack):
    model = _copy_model(run_dir, tmp / "changed")
    _tamper(model / "adapter_model.safetensors", b"\0")
    return predict(model, image), ["adapter_model.safetensors", "fails its checksum"]


def case_cache_shard_nan(tmp, run_dir, image, stack):
    import shutil

    shutil.copytree(run_dir.parent / "cache", tmp / "cache")
    shard = sorted((tmp / "cache").glob("shard-*.safetensors"))[0]
    _tamper(shard, np.float32("nan").tobytes())
    return (["eval", "--checkpoint", str(run_dir), "--cache-dir", str(tmp / "cache"), "--output-dir", str(tmp / "ev")],
            [shard.name, "dept-vl features"])


def case_backbone_gone(tmp, run_dir, image, stack):
    model = _copy_model(run_dir, tmp / "moved")
    config = json.loads((model / "dept_vl_config.json").read_text())
    config["model"]["text"]["backbone"] = str(tmp / "was-here" / "backbone")
    (model / "dept_vl_config.json").write_text(json.dumps(config))
    return predict(model, image), ["backbone is missing", str(tmp / "was-here" / "backbone"), "--backbone"]


def _train(tmp, output_dir, cache=True):
    (tmp / "tiny.yaml").write_text(TINY_RECIPE)
    return (["train", "--config", str(tmp / "tiny.yaml"), "--output-dir", str(output_dir), "--max-steps", "1"]
            + (["--cache-dir", str(tmp / "c")] if cache else []))


CASES = {name.removeprefix("case_"): f for name, f in list(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_user_error_is_one_line_naming_the_culprit(case, capsys, run_dir, tmp_path, monkeypatch):
    import contextlib

    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "default-cache"))
    image = write_image(tmp_path / "im.png", 3)
    with contextlib.ExitStack() as stack:
        argv, needles = CASES[case](tmp_path, run_dir, image, stack)
        fails(capsys, argv, *needles)
