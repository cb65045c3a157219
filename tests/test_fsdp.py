"""`accelerate launch --use_fsdp --fsdp_version 2` on the CPU: dept-vl shards the frozen language model's layers
itself (accelerate runs plain data parallel there); two processes train the same adapter as data parallel, and a
sharded run resumes."""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

LAUNCH = {"ddp": ["--multi_gpu"], "fsdp": ["--use_fsdp", "--fsdp_version", "2"]}


def launch(kind, vlm, run, *extra):
    command = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH[kind], "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dept_vl.cli",
               "train", "--vlm", str(vlm), "--task", "easyvqa", "--k-shot", "32", "--batch-size", "4",
               "--test-examples", "7", "--output-dir", str(run), "--set", "model.dept.max_length=48",
               "--no-tensorboard", "--log-every", "1", "--lr-schedule", "constant", "--save-every", "2", "--cache-dir", str(run.parent / "cache"), *extra]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def test_fsdp_on_the_cpu_trains_the_data_parallel_adapter_and_resumes(tiny_llava_dir, tmp_path):
    parallel, sharded = tmp_path / "ddp", tmp_path / "fsdp"
    assert "FSDP2" not in launch("ddp", tiny_llava_dir, parallel, "--max-steps", "4")
    log = launch("fsdp", tiny_llava_dir, sharded, "--max-steps", "2")
    assert "FSDP2: 2 layers of the frozen language model sharded across 2 processes" in log
    launch("fsdp", tiny_llava_dir, sharded, "--max-steps", "4", "--resume")
    metrics = [json.loads((run / "metrics.json").read_text())["train"] for run in (parallel, sharded)]
    assert metrics[0]["steps"] == metrics[1]["steps"] == 4
    assert abs(metrics[0]["final_loss"] - metrics[1]["final_loss"]) < 1e-5
    assert metrics[1]["weights_agree_across_processes"] is True
    expected, got = (load_file(run / "model" / "adapter_model.safetensors") for run in (parallel, sharded))
    assert set(expected) == set(got) == {"native.dept.prompt_embeddings", "native.dept.lora_embedding_A",
                                         "native.dept.lora_embedding_B"}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert len((sharded / "predictions-easyvqa-test.jsonl").read_text().splitlines()) == 7  # 4 + 3: gathered
