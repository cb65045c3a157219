import json
import shutil
import subprocess
import sys

import pytest

from dept_vl import __version__
from dept_vl.cli import main

from conftest import TINY_RECIPE, gqa_hf_rows
from test_errors import fails


def run(*args):
    return subprocess.run([sys.executable, "-m", "dept_vl.cli", *args], capture_output=True, text=True)


def help_text(capsys, *args) -> str:
    """What ``dept-vl *args --help`` prints, whitespace folded (in-process: argparse exits 0 after printing)."""
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_version_and_help(capsys):
    out = run("--version")  # a real process: the module runs as the command
    assert out.returncode == 0 and out.stdout.strip() == f"dept-vl {__version__}"
    assert all(c in help_text(capsys) for c in ("budget", "features", "train", "eval", "predict"))


def test_flags_carry_the_help_of_their_config_fields(capsys):
    train = help_text(capsys, "train")
    assert "--prompt-lr PROMPT_LR" in train and "learning rate of the prompts P (default: 0.3)" in train
    assert "--no-cache-features" in train and "--method {pt,dept,adept,lora,full}" in train
    bench = help_text(capsys, "bench")
    assert "--pad-to-max-length, --no-pad-to-max-length" in bench and "DePT's rank (default: 30)" in bench


def test_every_flag_of_every_subcommand_has_help_and_one_default():
    """Each option says what it does, and says its default at most once (no "(default: None)")."""
    from dept_vl.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) >= {"budget", "features", "train", "eval", "predict", "serve", "bench", "bench-serve",
                             "fetch-gguf"}
    for name, parser in commands.items():
        for action in parser._actions:
            if action.dest == "help":
                continue
            text = action.help or ""
            assert text.strip(), f"{name} {action.option_strings or action.dest} has no help"
            assert text.count("(default:") <= 1 and "(default: None)" not in text, f"{name} {action.dest}: {text}"


def test_budget_lists_paper_pairs(capsys):
    assert main(["budget", "--hidden-size", "768", "--max-length", "256", "--m", "100", "--step", "20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert ["60", "30", "76,800", "19"] in rows and ["40", "45", "76,800", "29"] in rows  # l, DePT's r, ADePT's r
    assert ["100", "0", "76,800", "-"] in rows  # no room left for ADePT's network


def test_user_error_is_one_line_and_exit_2():
    out = run("budget", "--max-length", "0")
    assert out.returncode == 2
    assert out.stderr.strip() == "dept-vl: error: max_length must be an integer >= 1, got 0"
    assert "Traceback" not in out.stderr


def test_features_command_builds_and_resumes_cache(tmp_path, vl_data, capsys):
    args = ["features", "--task", "gqa", "--data-dir", str(vl_data["gqa"]), "--split", "testdev", "--encoder",
            "efficientnet-lite0", "--image-size", "32", "--pool-tokens", "1", "--cache-dir", str(tmp_path / "cache"),
            "--shard-size", "1"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["images"] == 2 and first["computed"] == 2 and first["shards"] == 2 and first["num_tokens"] == 1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 0  # everything already cached
    fails(capsys, [a if a != "32" else "64" for a in args], "was made with")  # same cache, other image size: refused


def test_training_reads_the_cache_that_features_built(tmp_path, vl_data, capsys):
    """``--cache-dir D`` names the same cache for ``features`` and ``train``: nothing is computed twice."""
    cache = tmp_path / "cache"
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    assert main(["features", "--config", str(tmp_path / "tiny.yaml"), "--task", "gqa", "--data-dir",
                 str(vl_data["gqa"]), "--cache-dir", str(cache)]) == 0  # the recipe's encoder: 32 px, 1 token
    built = json.loads(capsys.readouterr().out)
    assert built["computed"] == built["images"] > 0 and built["cache_dir"] == str(cache)
    shards = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--task", "gqa", "--data-dir", str(vl_data["gqa"]),
                 "--k-shot", "0", "--batch-size", "2", "--max-steps", "1", "--cache-dir", str(cache),
                 "--output-dir", str(tmp_path / "run")]) == 0
    assert "caching image features" not in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == shards  # not one shard written or touched


def test_features_command_reads_hf_datasets_lazily(tmp_path, capsys):
    import datasets

    datasets.DatasetDict({"testdev": gqa_hf_rows()}).save_to_disk(tmp_path / "gqa")
    assert main(["features", "--task", "gqa", "--data-dir", str(tmp_path / "gqa"), "--split", "testdev", "--encoder",
                 "efficientnet-lite0", "--image-size", "32", "--pool-tokens", "1", "--cache-dir",
                 str(tmp_path / "cache")]) == 0
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


def test_eval_cli_writes_its_own_files_and_never_the_runs(trained_run, capsys):
    run = trained_run / "run"
    trained = (run / "predictions-easyvqa-test.jsonl").read_bytes()
    args = ["eval", "--checkpoint", str(run), "--limit", "10", "--cache-dir", str(trained_run / "cache")]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert json.loads((run / "eval" / "metrics-easyvqa-test-first10.json").read_text()) == metrics
    assert len((run / "eval" / "predictions-easyvqa-test-first10.jsonl").read_text().splitlines()) == 10
    assert (run / "predictions-easyvqa-test.jsonl").read_bytes() == trained  # training's outputs untouched
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err  # nothing replaced unasked
    assert main(args + ["--overwrite"]) == 0
    assert main(args + ["--output-dir", str(trained_run / "ev")]) == 0
    assert len((trained_run / "ev" / "predictions-easyvqa-test-first10.jsonl").read_text().splitlines()) == 10


def test_predict_cli_prints_only_the_answer(trained_run, tmp_path, capsys):
    import easy_vqa

    image = easy_vqa.get_test_image_paths()[0]
    out = run("predict", image, "zorblat quixt vemm?", "--checkpoint", str(trained_run / "run"))
    assert out.returncode == 0, out.stderr  # a real process: nothing but the answer reaches stdout
    answers = set(easy_vqa.get_answers())
    assert out.stdout.count("\n") == 1 and out.stdout.strip() in answers | {""}
    assert "words of 'zorblat quixt vemm?' are unknown" in out.stderr  # warnings go to stderr
    assert "Loading weights" not in out.stderr and "it/s]" not in out.stderr  # no transformers loading bar
    capsys.readouterr()
    assert main(["predict", image, "what color is the shape?", "--checkpoint", str(trained_run / "run"),
                 "--num-beams", "3"]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"image": image, "question": "is there a circle?"}) + "\n" +
                     json.dumps({"images": [image], "question": "what shape is it?"}) + "\n")
    assert main(["predict", "--input", str(batch), "--checkpoint", str(trained_run / "run")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all("prediction" in line for line in lines)
    (tmp_path / "batch" / "pics").mkdir(parents=True)  # a relative image path: relative to the JSONL, as in --data
    shutil.copy(image, tmp_path / "batch" / "pics" / "a.png")
    (tmp_path / "batch" / "in.jsonl").write_text(json.dumps({"image": "pics/a.png", "question": "is there a circle?"}))
    assert main(["predict", "--input", str(tmp_path / "batch" / "in.jsonl"), "--checkpoint",
                 str(trained_run / "run")]) == 0
    assert json.loads(capsys.readouterr().out)["prediction"] == lines[0]["prediction"]


def test_predict_cli_errors_are_one_line(trained_run, tmp_path, capsys):
    """In-process (the subprocess tests above show the real process prints what main() prints)."""
    fails(capsys, ["predict", str(tmp_path / "nope.png"), "what?", "--checkpoint", str(trained_run / "run")],
          "image not found")
    fails(capsys, ["predict", str(trained_run / "run" / "curves.png"), "--checkpoint", str(trained_run / "run")],
          "needs a question")
    fails(capsys, ["predict", "x.png", "what?", "--checkpoint", str(tmp_path)], "dept_vl_config.json")


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path, capsys):
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
    capsys.readouterr()
    assert main(args[3:-1] + [str(step + 2), "--resume"]) == 0  # in-process: the resume needs no signal
    resumed = capsys.readouterr()
    assert f"resumed from {run_dir / 'checkpoints'}" in resumed.err
    assert json.loads(resumed.out)["train"]["steps"] == step + 2


def test_one_run_per_directory_locked_and_taken_over_after_a_kill(tmp_path, capsys):
    """The lock holder is a real process (killed with SIGKILL); the later runs are in-process."""
    import signal
    import time

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "dept_vl.cli", "train", "--config", str(tmp_path / "tiny.yaml"), "--output-dir",
            str(run_dir), "--cache-dir", str(tmp_path / "cache")]
    first = subprocess.Popen(args + ["--max-steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run_dir / "recipe.yaml").exists() and time.time() < deadline:
        time.sleep(0.2)
    started = time.time()
    fails(capsys, args[3:] + ["--max-steps", "2"], f"is in use by another dept-vl process (pid {first.pid})")
    assert time.time() - started < 60
    first.send_signal(signal.SIGKILL)
    first.wait()
    fails(capsys, args[3:] + ["--max-steps", "2"], "already holds a run")  # killed, but its run is still there
    assert main(args[3:] + ["--max-steps", "2", "--overwrite"]) == 0  # the dead process's lock is taken over
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 2


def test_a_moved_run_still_predicts_and_evaluates(trained_run, tmp_path, capsys):
    import shutil

    import easy_vqa

    moved = tmp_path / "elsewhere" / "run2"
    shutil.copytree(trained_run / "run", moved)
    shutil.move(str(trained_run / "run" / "backbone"), tmp_path / "hidden")  # the original backbone path is gone
    try:
        image = easy_vqa.get_test_image_paths()[0]
        assert main(["predict", image, "what color is the shape?", "--checkpoint", str(moved)]) == 0
        assert capsys.readouterr().out.count("\n") == 1
        assert main(["eval", "--checkpoint", str(moved), "--limit", "4", "--cache-dir",
                     str(trained_run / "cache")]) == 0
        assert (moved / "eval" / "metrics-easyvqa-test-first4.json").is_file()
    finally:
        shutil.move(str(tmp_path / "hidden"), trained_run / "run" / "backbone")


def test_predict_input_skips_bad_lines_with_their_numbers(trained_run, tmp_path, capsys, caplog):
    """In-process: the warnings are log records (a real process prints them on stderr)."""
    import easy_vqa

    image = easy_vqa.get_test_image_paths()[0]
    lines = [json.dumps({"image": image, "question": "what color is the shape?"}), "{broken",
             json.dumps({"image": str(tmp_path / "missing.png"), "question": "what?"}),
             json.dumps({"images": [image], "question": "is there a circle?"}), json.dumps({"question": "no image"})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["predict", "--input", str(tmp_path / "in.jsonl"), "--checkpoint", str(trained_run / "run"),
                 "--skip-bad-lines"]) == 0
    answered = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["question"] for a in answered] == ["what color is the shape?", "is there a circle?"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for number, why in ((2, "malformed JSON"), (3, "image not found"), (5, 'no "image" or "images" field')):
        assert any(f"line {number}" in m and why in m for m in warned), (number, warned)
    summaries = [line for line in warned if ": skipped " in line and "line(s)" in line]
    assert summaries == [f"{tmp_path / 'in.jsonl'}: skipped 3 bad line(s)"]  # one summary for one skip of each kind


def test_logs_are_plain_lines_in_a_file_and_end_with_the_run(tmp_path, capsys, monkeypatch):
    """stderr not a terminal (captured, as when redirected to a file): plain lines, no bar frames."""
    monkeypatch.setenv("DEPT_VL_LOG_SECONDS", "0")
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--output-dir", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    steps = [line for line in lines if line.startswith("train dept: step ")]
    assert steps[0].startswith("train dept: step 1/4 (25%)") and "ETA" in steps[0]
    assert steps[-1].startswith("train dept: step 4/4 (100%)") and "loss=" in steps[-1] and "lr=" in steps[-1]
    assert not any("it_s=" in line for line in lines)  # one rate per line: step/s
    third = next(line for line in steps if line.startswith("train dept: step 3/4"))
    assert third.endswith("(at step 2)")  # the loss logged at step 2 says so, not passed off as step 3's
    assert lines[-1].startswith(f"run saved in {tmp_path / 'run'}: test accuracy ")


def test_training_from_python_with_a_silent_log_is_silent(tmp_path, capfd):
    import yaml

    from dept_vl.runs.recipe import Recipe
    from dept_vl.training.loop import train
    from dept_vl._dataclass import from_dict

    recipe = from_dict(Recipe, yaml.safe_load(TINY_RECIPE))
    recipe.train.output_dir, recipe.train.cache_dir = str(tmp_path / "run"), str(tmp_path / "cache")
    capfd.readouterr()
    assert train(recipe, log=lambda *_: None)["train"]["steps"] == 4
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no progress lines, no transformers bars


def test_questions_in_unknown_words_are_answered_with_a_warning(trained_run, capsys, caplog):
    import easy_vqa

    image = easy_vqa.get_test_image_paths()[0]
    assert main(["predict", image, "zorblat quixt vemm?", "--checkpoint", str(trained_run / "run")]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("3 of the 4 words of 'zorblat quixt vemm?' are unknown to the model's tokenizer" in m for m in warned)
    caplog.clear()
    assert main(["predict", image, "what color is the shape?", "--checkpoint", str(trained_run / "run")]) == 0
    assert not any("unknown" in r.getMessage() for r in caplog.records)


def test_features_builds_the_cache_the_default_training_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path))
    assert main(["features", "--task", "easyvqa", "--split", "test"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert (built["encoder"], built["image_size"], built["num_tokens"]) == ("efficientnet-lite0", 96, 9)
    assert built["cache_dir"] == str(tmp_path / "features" / "easyvqa" / "efficientnet-lite0-pretrained-96px-9tok")


def test_a_multi_task_run_from_the_command_line_to_eval_anywhere(tmp_path, vl_data, capsys, monkeypatch):
    import yaml

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    monkeypatch.chdir(vl_data["vqa"].parent)  # --data-dir relative to here
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--task", "vqa,nlvr2", "--data-dir", "vqa=vqa",
                 "--data-dir", "nlvr2=nlvr2", "--set", "model.max_images=2", "--k-shot", "0", "--batch-size", "2",
                 "--max-steps", "2", "--output-dir", str(run_dir), "--cache-dir", str(cache)]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert (trained["test"]["vqa/split"], trained["test"]["nlvr2/split"]) == ("test", "test1")
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["data_dir"]
    assert saved == {"vqa": str(vl_data["vqa"]), "nlvr2": str(vl_data["nlvr2"])}  # absolute
    monkeypatch.chdir(tmp_path)  # elsewhere: the run knows its data
    assert main(["eval", "--checkpoint", str(run_dir), "--cache-dir", str(cache)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated == {"test": trained["test"]}  # every task, the same schema and numbers as train's
    assert {p.name for p in (run_dir / "eval").iterdir()} == {
        "metrics-vqa+nlvr2-test.json", "predictions-vqa-test.jsonl", "predictions-nlvr2-test1.jsonl"}
    assert main(["eval", "--checkpoint", str(run_dir), "--task", "nlvr2", "--split", "val", "--cache-dir",
                 str(cache)]) == 0
    val = json.loads(capsys.readouterr().out)
    assert list(val) == ["val"] and val["val"]["nlvr2/split"] == "dev" and "vqa/split" not in val["val"]
    image = vl_data["nlvr2"] / "images" / "dev"
    assert main(["predict", str(next(image.iterdir())), "what?", "--checkpoint", str(run_dir)]) == 2
    assert "trained on vqa, nlvr2: name one with --task" in capsys.readouterr().err


def test_predict_and_eval_take_the_fast_path(trained_run, tmp_path, monkeypatch, capsys):
    """--compile on eval and predict --input: bucketed lengths, compiled static-cache generation, the same answers."""
    import easy_vqa

    import dept_vl.inference.evaluate as evaluate_module
    import dept_vl.inference.predict as predict_module
    from dept_vl.fast import for_inference

    made = []

    def quick(*args, **kwargs):  # aot_eager: the same graphs, no code generation
        made.append(for_inference(*args, backend="aot_eager", **kwargs))
        return made[-1]

    monkeypatch.setattr(predict_module, "for_inference", quick)
    monkeypatch.setattr(evaluate_module, "for_inference", quick)
    batch = tmp_path / "in.jsonl"
    batch.write_text("".join(json.dumps({"image": image, "question": q}) + "\n" for image, q in zip(
        list(easy_vqa.get_test_image_paths().values())[:3], ["is there a circle?", "what shape is it?", "what color is the shape?"])))
    answers = {}
    for flag in ("--no-compile", "--compile"):
        argv = ["predict", "--input", str(batch), "--checkpoint", str(trained_run / "run"), "--device", "cpu", flag]
        assert main(argv) == 0
        answers[flag] = capsys.readouterr().out
        assert main(["eval", "--checkpoint", str(trained_run / "run"), "--limit", "8", "--device", "cpu", flag,
                     "--output-dir", str(tmp_path / flag)]) == 0
        answers[flag + " eval"] = json.loads(capsys.readouterr().out)
    assert len(made) == 4 and made[:2] == [None, None] and all(fast.graphs >= 1 and fast.graph_breaks == 0 for fast in made[2:])
    assert answers["--compile"] == answers["--no-compile"] and answers["--compile"].count("\n") == 3
    assert answers["--compile eval"] == answers["--no-compile eval"]
    assert (tmp_path / "--compile" / "predictions-easyvqa-test-first8.jsonl").read_text() == \
        (tmp_path / "--no-compile" / "predictions-easyvqa-test-first8.jsonl").read_text()


def test_eval_refuses_a_bad_device_before_writing_anything(trained_run, tmp_path, capsys):
    fails(capsys, ["eval", "--checkpoint", str(trained_run / "run"), "--device", "gpu", "--output-dir",
                   str(tmp_path / "ev")], "not a device")
    assert not (tmp_path / "ev").exists()


def test_report_to_goes_through_accelerates_trackers(tmp_path, capsys):
    import importlib.util

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE.replace("tensorboard: false", "tensorboard: true"))
    base = ["train", "--config", str(tmp_path / "tiny.yaml"), "--cache-dir", str(tmp_path / "cache"),
            "--max-steps", "2", "--test-examples", "4"]
    assert main(base + ["--output-dir", str(tmp_path / "tb"), "--report-to", "tensorboard"]) == 0
    assert list((tmp_path / "tb" / "logs").rglob("events.out.tfevents.*"))  # TensorBoard wrote its events
    assert main(base + ["--output-dir", str(tmp_path / "none"), "--report-to", "none"]) == 0
    assert not (tmp_path / "none" / "logs").exists()  # no tracker: nothing logged
    capsys.readouterr()
    if importlib.util.find_spec("wandb") is None:  # the user's choice, installed by them
        assert main(base + ["--output-dir", str(tmp_path / "w"), "--report-to", "wandb"]) == 2
        assert "the wandb package is not installed (pip install wandb)" in capsys.readouterr().err
    assert main(base + ["--output-dir", str(tmp_path / "x"), "--report-to", "comet"]) == 2


def argparse_fails(capsys, argv) -> str:
    """The CLI's own parser refuses ``argv``: exit code 2 and one line on stderr, no usage text; that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1 and "usage" not in err, err
    assert err.startswith("dept-vl: error: ")
    return err.strip()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--methd", "dept"], "unknown flag --methd (did you mean --method?)"),
    (["train", "--max-step", "5"], "unknown flag --max-step (did you mean --max-steps?)"),  # no prefix abbreviation
    (["eval", "--checkpoint", "x", "--spilt=val"], "unknown flag --spilt (did you mean --split?)"),
    (["train", "--method", "dpet"], "invalid choice 'dpet' (did you mean 'dept'?); choose from pt, dept, adept"),
    (["trian"], "invalid choice 'trian' (did you mean 'train'?)"),
    (["train", "--task", "easyvqa", "stray"], "unexpected argument 'stray'; see dept-vl train --help"),
])
def test_command_line_mistakes_are_one_line_with_a_suggestion(capsys, argv, expected):
    assert expected in argparse_fails(capsys, argv)


def test_no_flag_takes_an_abbreviation():
    from dept_vl.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert all(not parser.allow_abbrev for parser in commands.values())


def test_a_taken_run_directory_is_refused_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    def no_data(*_args, **_kwargs):
        raise AssertionError("data read before the run directory was checked")

    monkeypatch.setattr("dept_vl.training.loop.load_splits", no_data)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    fails(capsys, ["train", "--task", "easyvqa", "--output-dir", str(tmp_path / "run")], "already holds a run")
    (tmp_path / "file").write_text("")
    fails(capsys, ["train", "--task", "easyvqa", "--output-dir", str(tmp_path / "file")], "is a file")


def test_make_tiny_vlm_writes_a_model_with_its_processor_and_never_over_a_folder(tmp_path, capsys):
    from transformers import AutoConfig, AutoProcessor

    assert main(["make-tiny-vlm", str(tmp_path / "tiny")]) == 0
    assert "dept-vl train --vlm" in capsys.readouterr().err
    config, processor = AutoConfig.from_pretrained(tmp_path / "tiny"), AutoProcessor.from_pretrained(tmp_path / "tiny")
    assert config.model_type == "llava" and type(processor).__name__ == "LlavaProcessor"
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape is it?"}]}]
    assert processor.apply_chat_template(turn, add_generation_prompt=True) == "user : <image>what shape is it? assistant :"
    assert processor.tokenizer.convert_ids_to_tokens(processor.tokenizer("triangle teal")["input_ids"]) == [
        "triangle", "teal"]  # easy-vqa's answers are words of its vocabulary
    fails(capsys, ["make-tiny-vlm", str(tmp_path / "tiny")], "exists and is not an empty directory")
