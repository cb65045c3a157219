import json
import subprocess
import sys

from dept_vl import __version__
from dept_vl.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "dept_vl.cli", *args], capture_output=True, text=True)


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"dept-vl {__version__}"
    out = run("--help")
    assert out.returncode == 0 and "budget" in out.stdout and "demo" in out.stdout


def test_budget_lists_paper_pairs(capsys):
    assert main(["budget", "--hidden-size", "768", "--max-length", "256", "--m", "100", "--step", "20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert ["60", "30", "76,800"] in rows and ["40", "45", "76,800"] in rows


def test_user_error_is_one_line_and_exit_2():
    out = run("budget", "--max-length", "0")
    assert out.returncode == 2
    assert out.stderr.strip() == "dept-vl: error: max_length must be an integer >= 1, got 0"
    assert "Traceback" not in out.stderr


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--steps", "3", "--train-images", "8", "--test-questions", "8", "--batch-size", "4",
                 "--output-dir", "run"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_questions"] == 8 and 0.0 <= result["test_accuracy"] <= 1.0
    assert result["example"]["question"] and isinstance(result["example"]["prediction"], str)
    assert json.loads((tmp_path / "run" / "demo_results.json").read_text()) == result
    monkeypatch.chdir(tmp_path.parent)  # the checkpoint names its backbone by absolute path
    from dept_vl import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(tmp_path / "run" / "checkpoint")
    assert model.text.name_or_path == str(tmp_path / "run" / "backbone")


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
