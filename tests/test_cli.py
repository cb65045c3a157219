import json
import subprocess
import sys

import pytest

from dept_vl import __version__
from dept_vl.cli import main

from conftest import TINY_RECIPE, gqa_hf_rows


def run(*args):
    return subprocess.run([sys.executable, "-m", "dept_vl.cli", *args], capture_output=True, text=True)


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"dept-vl {__version__}"
    out = run("--help")
    assert out.returncode == 0 and all(c in out.stdout for c in ("budget", "features", "train", "eval", "predict"))


def test_flags_carry_the_help_of_their_config_fields():
    train = run("train", "--help").stdout
    assert "--prompt-lr PROMPT_LR" in train and "learning rate of DePT's prompt P (default: 0.3)" in " ".join(train.split())
    assert "--no-cache-features" in train and "--method {pt,dept,lora,full}" in train
    bench = " ".join(run("bench", "--help").stdout.split())
    assert "--pad-to-max-length, --no-pad-to-max-length" in bench and "DePT's rank (default: 30)" in bench


def test_budget_lists_paper_pairs(capsys):
    assert main(["budget", "--hidden-size", "768", "--max-length", "256", "--m", "100", "--step", "20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert ["60", "30", "76,800"] in rows and ["40", "45", "76,800"] in rows


def test_user_error_is_one_line_and_exit_2():
    out = run("budget", "--max-length", "0")
    assert out.returncode == 2
    assert out.stderr.strip() == "dept-vl: error: max_length must be an integer >= 1, got 0"
    assert "Traceback" not in out.stderr


def test_features_command_builds_and_resumes_cache(tmp_path, vl_data, capsys):
    args = ["features", "--task", "gqa", "--data-dir", str(vl_data["gqa"]), "--split", "testdev", "--image-size",
            "32", "--pool-tokens", "1", "--cache-dir", str(tmp_path / "cache"), "--shard-size", "1"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["images"] == 2 and first["computed"] == 2 and first["shards"] == 2 and first["num_tokens"] == 1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 0  # everything already cached
    out = run(*[a if a != "32" else "64" for a in args])  # same cache, other image size: refused
    assert out.returncode == 2 and "was made with" in out.stderr and "Traceback" not in out.stderr


def test_training_reads_the_cache_that_features_built(tmp_path, vl_data, capsys):
    """``--cache-dir D`` names the same cache for ``features`` and ``train``: nothing is computed twice."""
    cache = tmp_path / "cache"
    assert main(["features", "--task", "gqa", "--data-dir", str(vl_data["gqa"]), "--image-size", "32",
                 "--pool-tokens", "1", "--cache-dir", str(cache)]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["computed"] == built["images"] > 0 and built["cache_dir"] == str(cache)
    shards = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--task", "gqa", "--data-dir", str(vl_data["gqa"]),
                 "--k-shot", "0", "--batch-size", "2", "--max-steps", "1", "--cache-dir", str(cache),
                 "--output-dir", str(tmp_path / "run")]) == 0
    assert "caching image features" not in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == shards  # not one shard written or touched


def test_features_command_reads_hf_datasets_lazily(tmp_path, capsys):
    import datasets

    datasets.DatasetDict({"testdev": gqa_hf_rows()}).save_to_disk(tmp_path / "gqa")
    assert main(["features", "--task", "gqa", "--data-dir", str(tmp_path / "gqa"), "--split", "testdev",
                 "--image-size", "32", "--pool-tokens", "1", "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and report["computed"] == 2  # two distinct images behind three questions


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run made by `dept-vl train` through the command line."""
    root = tmp_path_factory.mktemp("cli-run")
    (root / "tiny.yaml").write_text(TINY_RECIPE)
    code = main(["train", "--config", str(root / "tiny.yaml"), "--output-dir", str(root / "run"),
                 "--cache-dir", str(root / "cache"), "--max-steps", "3"])
    assert code == 0
    return root


def test_train_cli_applies_flags_over_the_recipe(trained_run):
    metrics = json.loads((trained_run / "run" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3 and "accuracy" in metrics["test"]
    assert "max_steps: 3" in (trained_run / "run" / "recipe.yaml").read_text()


def test_eval_cli_writes_predictions_and_metrics(trained_run, capsys):
    run = trained_run / "run"
    assert main(["eval", "--checkpoint", str(run), "--limit", "10", "--output-dir", str(trained_run / "ev"),
                 "--cache-dir", str(trained_run / "cache")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert json.loads((trained_run / "ev" / "metrics-easyvqa-test.json").read_text()) == metrics
    assert len((trained_run / "ev" / "predictions-easyvqa-test.jsonl").read_text().splitlines()) == 10


def test_predict_cli_prints_only_the_answer(trained_run, tmp_path):
    import easy_vqa

    image = easy_vqa.get_test_image_paths()[0]
    out = run("predict", image, "what color is the shape?", "--checkpoint", str(trained_run / "run"))
    assert out.returncode == 0, out.stderr
    answers = set(easy_vqa.get_answers())
    assert out.stdout.count("\n") == 1 and out.stdout.strip() in answers | {""}
    beam = run("predict", image, "what color is the shape?", "--checkpoint", str(trained_run / "run"),
               "--num-beams", "3")
    assert beam.returncode == 0 and beam.stdout.count("\n") == 1
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"image": image, "question": "is there a circle?"}) + "\n" +
                     json.dumps({"images": [image], "question": "what shape is it?"}) + "\n")
    out = run("predict", "--input", str(batch), "--checkpoint", str(trained_run / "run"))
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and len(lines) == 2 and all("prediction" in line for line in lines)


def test_predict_cli_errors_are_one_line(trained_run, tmp_path):
    missing = run("predict", str(tmp_path / "nope.png"), "what?", "--checkpoint", str(trained_run / "run"))
    assert missing.returncode == 2 and "image not found" in missing.stderr and "Traceback" not in missing.stderr
    no_question = run("predict", str(trained_run / "run" / "curves.png"), "--checkpoint", str(trained_run / "run"))
    assert no_question.returncode == 2 and "needs a question" in no_question.stderr
    no_ckpt = run("predict", "x.png", "what?", "--checkpoint", str(tmp_path))
    assert no_ckpt.returncode == 2 and "dept_vl_config.json" in no_ckpt.stderr


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    import signal
    import time

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "dept_vl.cli", "train", "--config", str(tmp_path / "tiny.yaml"), "--output-dir",
            str(run_dir), "--cache-dir", str(tmp_path / "cache"), "--max-steps", "100000"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "recipe.yaml").exists() and time.time() < deadline:  # written as training starts
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    last = err.strip().splitlines()[-1]
    assert "SIGTERM at step" in last and "--resume" in last and "Traceback" not in err
    from dept_vl.training.state import latest_checkpoint, load_state

    step = load_state(latest_checkpoint(run_dir / "checkpoints"))["step"]
    assert step >= 1
    resumed = subprocess.run(args[:-1] + [str(step + 2), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {run_dir / 'checkpoints'}" in resumed.stderr
    assert json.loads(resumed.stdout)["train"]["steps"] == step + 2
