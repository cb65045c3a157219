"""`dept-vl train --data`: a user's own data in every format VLM users have (examples/make_examples.py writes
easy-vqa questions in each), bad data in one line, and a run that evaluates, predicts and serves with no data flags."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from dept_vl.cli import main
from dept_vl.data.sources import list_formats, read_source
from dept_vl.data.tasks import DataSpec, OwnTask

from conftest import TINY_RECIPE, write_image
from test_errors import fails

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_examples():
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """easy-vqa's first 40 training and 12 test questions in every format: format -> (train, test)."""
    examples = make_examples()
    out = tmp_path_factory.mktemp("formats")
    return examples.write_formats(out, examples.easyvqa_questions("train")[:40],
                                  examples.easyvqa_questions("test")[:12])


def examples_of(source: str) -> list[tuple]:
    task = OwnTask(DataSpec("d", source, test=source, test_fraction=0))
    data = task.load("test")
    return [(ex.image_ids, ex.source, tuple(ex.targets), ex.meta["type"]) for ex in data.examples]


def test_every_format_reads_into_the_same_examples(formats):
    assert set(list_formats()) == {"simple", "llava", "messages", "table", "imagefolder", "hf",
                                   "llamafactory"}  # its registry: tests/test_llamafactory_data.py
    reference = examples_of(str(formats["simple-jsonl"][0]))
    assert len(reference) == 40 and reference[0][2] and reference[0][3] in ("shape", "color", "yes/no")
    for fmt, (train, _) in formats.items():
        got = examples_of(str(train))
        if fmt in ("llava", "messages"):  # no "type" field in these formats
            got, want = [e[:3] for e in got], [e[:3] for e in reference]
        else:
            want = reference
        assert got == want, fmt


def test_the_committed_examples_read(tmp_path):
    for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        data = next(folder.glob("train*"), None) or folder / "conversations.json"
        assert read_source(str(data)), folder
    chats = read_source(str(EXAMPLES / "llava-multi-turn" / "conversations.json"))
    later = next(r for r in chats if r.context)  # a later answer turn: the turns before it are its context
    assert later.context[0][0] == "user" and later.context[1][0] == "assistant" and later.question


TINY = ["--config", "TINY", "--max-steps", "6", "--batch-size", "8", "--no-tensorboard", "--test-examples", "0",
        "--k-shot", "0"]


def tiny_args(tmp_path, *args):
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    return [a if a != "TINY" else str(tmp_path / "tiny.yaml") for a in ["train", *TINY, *args]]


def test_train_eval_predict_serve_on_own_data(formats, tmp_path, capsys):
    train, test = formats["simple-jsonl"]
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path, "--data", str(train), "--test-data", str(test), "--output-dir", str(run),
                          "--cache-dir", str(tmp_path / "cache"))) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test"]["examples"] == 12 and {"accuracy", "accuracy/color"} <= set(metrics["test"])
    assert main(["eval", "--checkpoint", str(run), "--cache-dir", str(tmp_path / "cache")]) == 0  # no data flags
    assert json.loads(capsys.readouterr().out)["test"] == {k: v for k, v in metrics["test"].items()}
    image = next((train.parent / "images").iterdir())
    assert main(["predict", str(image), "what color is the shape?", "--checkpoint", str(run)]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # one answer (6 steps: maybe an empty one)
    from dept_vl.inference.predict import Predictor

    assert Predictor(str(run)).task.takes_question  # the run says what its data is, without reading it
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["data"]["kinds"] == {"simple_jsonl": {"takes_question": True, "num_images": 1}}
    assert saved["data"]["test"] == {"simple_jsonl": str(test)} and "data" not in saved["train"]


def test_the_same_questions_give_the_same_run_in_every_format(formats, tmp_path, capsys):
    scores = {}
    for fmt in ("simple-jsonl", "llava", "csv", "imagefolder"):
        train, test = formats[fmt]
        assert main(tiny_args(tmp_path, "--data", f"shapes={train}", "--test-data", f"shapes={test}",
                              "--output-dir", str(tmp_path / fmt), "--cache-dir", str(tmp_path / "cache"),
                              "--metric", "exact")) == 0
        scores[fmt] = json.loads(capsys.readouterr().out)["test"]["accuracy"]
    assert len(set(scores.values())) == 1, scores  # one image, one question, one answer: one run


def test_a_directory_of_split_folders_gives_each_split_its_folder(formats, tmp_path, capsys):
    """``--data DIR`` where DIR/train and DIR/test are imagefolders (``datasets``' layout): no held-out share."""
    train, test = formats["imagefolder"]
    root = train.parent
    assert (train.name, test.name, test.parent) == ("train", "test", root)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path, "--data", str(root), "--output-dir", str(run), "--cache-dir",
                          str(tmp_path / "cache"))) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["test"]["examples"] == 12 and "test: test, 12 examples" in out.err, out.err[-800:]
    assert "train: train, 40 examples" in out.err  # both folders whole: no held-out share
    assert main(["eval", "--checkpoint", str(run), "--data", str(root), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["examples"] == 12  # eval --data DIR: its test/ folder
    (root / "test" / "metadata.jsonl").rename(root / "test" / "elsewhere.jsonl")
    spec = OwnTask(DataSpec("d", str(root / "train"), test_fraction=0.25))
    assert len(spec.records("test")) == 10  # without a test folder the held-out share is back


def test_held_out_fractions_are_seeded_and_reported(formats, tmp_path, capsys):
    train, _ = formats["messages"]
    args = tiny_args(tmp_path, "--data", str(train), "--test-fraction", "0.25", "--cache-dir", str(tmp_path / "c"))
    assert main(args + ["--output-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["test"]["examples"] == 10 and "test: test, 10 examples" in out.err
    task = OwnTask(DataSpec("d", str(train), test_fraction=0.25))
    again = OwnTask(DataSpec("d", str(train), test_fraction=0.25))
    assert [r.where for r in task.records("test")] == [r.where for r in again.records("test")]  # fixed, seeded
    assert not {r.where for r in task.records("test")} & {r.where for r in task.records("train")}


def test_multi_task_own_data_gives_each_its_own_prompt(formats, tmp_path, capsys):
    assert main(tiny_args(tmp_path, "--data", f"first={formats['csv'][0]}", "--data", f"second={formats['llava'][0]}",
                          "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"))) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"first/accuracy", "second/accuracy"} <= set(metrics["test"])
    config = json.loads((tmp_path / "run" / "model" / "dept_vl_config.json").read_text())["model"]
    assert config["tasks"] == ["first", "second"] and config["dept"]["num_prompts"] == 2


def test_one_image_under_two_paths_is_cached_once_and_a_changed_file_is_new(tmp_path):
    first = write_image(tmp_path / "a.png", 0)
    (tmp_path / "b.png").write_bytes(first.read_bytes())
    lines = [{"image": "a.png", "question": "q one", "answer": "x"}, {"image": "b.png", "question": "q two",
                                                                        "answer": "y"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    data = OwnTask(DataSpec("d", str(tmp_path / "d.jsonl"), test_fraction=0)).load("train")
    assert data.examples[0].image_ids == data.examples[1].image_ids and len(data.images) == 1
    write_image(tmp_path / "b.png", 1)
    changed = OwnTask(DataSpec("d", str(tmp_path / "d.jsonl"), test_fraction=0)).load("train")
    assert changed.examples[1].image_ids != data.examples[1].image_ids


BAD = {
    "not JSON": ('{"image": "a.png", "question": "q", "answer": "x"}\n{broken\n', "line 2", "malformed JSON"),
    "no image": ('{"question": "q", "answer": "x"}\n', "line 1", "no image"),
    "image missing": ('{"image": "nope.png", "question": "q", "answer": "x"}\n', "line 1", "nope.png not found"),
    "empty answer": ('{"image": "a.png", "question": "q", "answer": "  "}\n', "line 1", "'answer' is empty"),
    "placeholders": ('{"image": "a.png", "question": "<image> <image> q", "answer": "x"}\n', "line 1",
                     "2 <image> placeholder(s) for 1 image(s)"),
    "unknown format": ('{"picture": "a.png", "q": "x"}\n', "unknown data format", "picture"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_line_naming_the_record_and_writes_nothing(case, tmp_path, capsys):
    text, *needles = BAD[case]
    write_image(tmp_path / "a.png", 0)
    (tmp_path / "d.jsonl").write_text(text)
    fails(capsys, tiny_args(tmp_path, "--data", str(tmp_path / "d.jsonl"), "--output-dir", str(tmp_path / "run")),
          str(tmp_path / "d.jsonl"), *needles)
    assert not (tmp_path / "run").exists()  # nothing written


def test_skip_bad_lines_trains_on_the_good_records_and_says_how_many(formats, tmp_path, capsys):
    good = Path(formats["simple-jsonl"][0]).read_text().splitlines()
    (formats["simple-jsonl"][0].parent / "mixed.jsonl").write_text(
        "\n".join(good[:20] + ["{broken", '{"question": "no image", "answer": "x"}'] + good[20:]) + "\n")
    assert main(tiny_args(tmp_path, "--data", str(formats["simple-jsonl"][0].parent / "mixed.jsonl"),
                          "--skip-bad-lines", "--output-dir", str(tmp_path / "run"), "--cache-dir",
                          str(tmp_path / "c"))) == 0
    err = capsys.readouterr().err
    assert "line 21" in err and "line 22" in err and "skipped 2 bad record(s)" in err
    assert err.count("skipped 2 bad record(s)") == 1


def test_make_examples_writes_only_where_told(tmp_path):
    import subprocess
    import sys

    before = {p: p.stat().st_mtime_ns for p in EXAMPLES.rglob("*") if p.is_file()}
    out = subprocess.run([sys.executable, str(EXAMPLES / "make_examples.py")], capture_output=True, text=True)
    assert out.returncode == 2 and "--out" in out.stderr  # no default: the tracked examples are not rewritten
    out = subprocess.run([sys.executable, str(EXAMPLES / "make_examples.py"), "--out", str(tmp_path), "--train", "2",
                          "--test", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "simple-jsonl" / "train.jsonl").read_text().splitlines()) == 2
    assert before == {p: p.stat().st_mtime_ns for p in EXAMPLES.rglob("*") if p.is_file()}
