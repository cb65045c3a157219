"""Resumable checkpoints: pointers move only after a complete write; SIGKILL at any moment leaves one loadable."""

import random
import signal
import subprocess
import sys
import textwrap
import time

import torch

from dept_vl import DePT, DePTConfig
from dept_vl.training.state import (best_checkpoint, latest_checkpoint, load_state, restore_rng, rng_state,
                                 save_checkpoint)


def test_rotation_keeps_newest_and_best(tmp_path):
    dept = DePT(DePTConfig(prompt_length=2, r=1, max_length=4), hidden_size=8)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, dept, {"step": step}, keep=2, best=step == 2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002", "step-000004", "step-000005"]
    assert latest_checkpoint(tmp_path).name == "step-000005" and best_checkpoint(tmp_path).name == "step-000002"
    assert load_state(latest_checkpoint(tmp_path)) == {"step": 5}
    (tmp_path / "latest").unlink()  # a lost pointer: fall back to the newest complete directory
    assert latest_checkpoint(tmp_path).name == "step-000005"


def test_rng_state_round_trip(tmp_path):
    dept = DePT(DePTConfig(prompt_length=2, r=1, max_length=4), hidden_size=8)
    save_checkpoint(tmp_path, 1, dept, {"rng": rng_state()})
    expected = (torch.rand(3), random.random())
    restore_rng(load_state(tmp_path / "step-000001")["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


WRITER = textwrap.dedent("""
    import sys, torch
    from dept_vl import DePT, DePTConfig
    from dept_vl.training.state import save_checkpoint
    root, start = sys.argv[1], int(sys.argv[2])
    dept = DePT(DePTConfig(prompt_length=64, r=16, max_length=512), hidden_size=256)
    print("ready", flush=True)
    for step in range(start, 10**6):
        with torch.no_grad():
            dept.prompt_embeddings.fill_(step)
        save_checkpoint(root, step, dept, {"step": step, "optimizer": {"m": torch.full((20000,), float(step))}})
""")


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    (tmp_path / "writer.py").write_text(WRITER)
    root, rng, start = tmp_path / "ckpt", random.Random(0), 1
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(root), str(start)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere inside a write, most likely
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = latest_checkpoint(root)
        if latest is None:  # killed before the first save finished
            continue
        state = load_state(latest)
        loaded = DePT.from_pretrained(latest)
        assert torch.all(loaded.prompt_embeddings == state["step"])  # weights and state from the same step
        assert torch.all(state["optimizer"]["m"] == state["step"])
        start = state["step"] + 1
    assert start > 1, "no checkpoint completed in five runs"
