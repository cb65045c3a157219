"""Two processes under `accelerate launch` on the CPU (gloo): they agree, and the checkpoint is written once.

accelerate 1.x starts several CPU processes only through its multi-process launcher: ``--multi_gpu`` with
``ACCELERATE_USE_CPU=1`` (``--cpu`` alone launches one process unless MPI is set up).
"""

import json
import os
import subprocess
import sys

from conftest import TINY_RECIPE


def test_two_process_training(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dept_vl.cli", "train",
               "--config", str(tmp_path / "tiny.yaml"), "--output-dir", str(run), "--cache-dir",
               str(tmp_path / "cache"), "--batch-size", "4", "--save-every", "2"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads(out.stdout) == metrics  # printed once, by the main process
    assert metrics["train"]["processes"] == 2 and metrics["train"]["weights_agree_across_processes"] is True
    assert metrics["train"]["steps"] == 4 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    entries = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert entries == ["latest", "step-000002", "step-000004"]  # no temp dirs: each written once
    assert len((run / "predictions-easyvqa-test.jsonl").read_text().splitlines()) == 8  # both halves gathered


def test_two_processes_share_feature_extraction(tmp_path):
    """`dept-vl features` under `accelerate launch`: each process encodes a share into shards of its own; the
    cache holds every image once; one report is printed."""
    from dept_vl.data.feature_cache import FeatureCache
    from dept_vl.data.shard_files import read_layout

    from PIL import Image

    (tmp_path / "images").mkdir()
    with open(tmp_path / "data.jsonl", "w") as fh:
        for i in range(12):
            Image.new("RGB", (32, 32), (20 * i, 0, 0)).save(tmp_path / "images" / f"{i}.png")
            fh.write(json.dumps({"image": f"images/{i}.png", "question": "what color?", "answer": "red"}) + "\n")
    data = str(tmp_path / "data.jsonl")
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dept_vl.cli",
               "features", "--data", data, "--cache-dir", str(cache), "--shard-size", "1", "--batch-size", "1",
               "--image-size", "32", "--pool-tokens", "1"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # printed once, by process 0
    assert report["processes"] == 2 and report["images"] == 12
    ids = [i for shard in sorted(cache.glob("shard-*")) for i in read_layout(shard).ids]
    assert len(ids) == len(set(ids)) == report["images"]  # every image once
    assert len({shard.name.split("-")[1] for shard in cache.glob("shard-*")}) == 2  # both processes wrote
    assert len(FeatureCache(cache, None)) == report["images"]
