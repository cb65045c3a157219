"""The multi-task target: on the shapes suite, one run of the four tasks scores at least 80% of each task's own
run (same frozen backbone, same method, as many batches per task)."""

import json

from dept_vl.bench.multitask import TASKS, format_multitask, run_multitask
from dept_vl.cli import main


def test_a_multi_task_run_learns_every_task(tmp_path):
    """The recipe's random T5 at half its width (d_model 128): a third less time than the bench's default, the
    same target."""
    half = {"text": {"random": {"d_model": 128, "d_ff": 256, "num_layers": 2, "num_heads": 4, "seed": 0}}}
    report = run_multitask(tmp_path, steps=150, examples=60, seeds=(0,), log=lambda *_: None, model_overrides=half)
    ratios = report["runs"][0]["ratio"]
    assert set(ratios) == set(TASKS) and report["target_met"]
    assert all(ratio >= 0.8 for ratio in ratios.values()), ratios  # measured: 1.76, 1.55, 0.92, 1.27
    assert json.loads((tmp_path / "backbone" / "config.json").read_text())["d_model"] == 128  # the backbone all ran
    assert "caption alone" in format_multitask(report)
    trained = json.loads((tmp_path / "seed0" / "vqa+gqa+nlvr2+caption" / "metrics.json").read_text())
    assert trained["test"]["caption/split"] == "test" and trained["train"]["steps"] == 600


def test_the_bench_command(tmp_path, capsys):
    assert main(["bench", "--multitask", "--multitask-steps", "1", "--multitask-examples", "20", "--output-dir",
                 str(tmp_path)]) == 0
    report = json.loads((tmp_path / "multitask.json").read_text())
    assert report["steps_per_task"] == 1 and [r["seed"] for r in report["runs"]] == [0]
    assert "mean multi / single" in capsys.readouterr().out
