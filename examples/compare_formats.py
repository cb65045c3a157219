"""The same easy-vqa questions through `dept-vl train --task easyvqa` and through `dept-vl train --data` in every
format: the test accuracy should be the same (the issue's bar: within 1 point).

    python examples/compare_formats.py --k-shot 2000 --test-examples 1000 --max-steps 600 --out runs/formats

The training questions are the ones `--task easyvqa --k-shot K` picks (the same seeded draw), the test questions
easy-vqa's first N test questions (as `--test-examples N`); every run has the same steps, seed and model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "dept_vl.cli", "train", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k-shot", type=int, default=2000)
    parser.add_argument("--test-examples", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/formats")
    args = parser.parse_args()
    from dept_vl.data.batches import k_shot
    from dept_vl.data.tasks import get_task

    examples, out = load("make_examples"), Path(args.out)
    full = get_task("easyvqa").load("train")
    chosen = k_shot(full, args.k_shot, args.seed).examples
    index = {ex.id: n for n, ex in enumerate(full.examples)}
    train_rows = examples.easyvqa_questions("train", [index[ex.id] for ex in chosen])
    test_rows = examples.easyvqa_questions("test")[: args.test_examples]
    paths = examples.write_formats(out / "data", train_rows, test_rows)
    common = ["--max-steps", str(args.max_steps), "--seed", str(args.seed), "--no-tensorboard",
              "--cache-dir", str(out / "cache")]
    report = {"settings": vars(args), "results": {}}
    base = train(["--task", "easyvqa", "--k-shot", str(args.k_shot), "--test-examples", str(args.test_examples),
                  "--output-dir", str(out / "runs" / "task-easyvqa"), *common])
    report["results"]["--task easyvqa"] = base["test"]["accuracy"]
    print(f"{'--task easyvqa':>16}: {base['test']['accuracy']:.4f}", flush=True)
    for fmt, (train_path, test_path) in paths.items():
        got = train(["--data", f"shapes={train_path}", "--test-data", f"shapes={test_path}", "--metric", "exact",
                     "--output-dir", str(out / "runs" / fmt), *common])
        report["results"][fmt] = got["test"]["accuracy"]
        print(f"{fmt:>16}: {got['test']['accuracy']:.4f}", flush=True)
    (out / "formats.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
