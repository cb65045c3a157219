"""Bench measurement primitives: paired ratios, a timed training step with counted FLOPs, peak memory."""

import itertools
from types import SimpleNamespace

import torch
from torch import nn

from dept_vl.bench.timing import TrainStep, median_time, paired_ratio


class Steps:
    """A fake step whose successive calls take the given seconds."""

    def __init__(self, seconds):
        self.seconds, self.calls = itertools.cycle(seconds), 0

    def __call__(self):
        self.calls += 1
        return next(self.seconds)


def test_paired_ratio_is_the_median_of_per_pair_ratios():
    a, b = Steps([3.0, 3.0, 30.0, 3.0]), Steps([2.0])  # one outlier pair among four
    ratio = paired_ratio(a, b, pairs=4, warmup=1)
    assert a.calls == b.calls == 5  # warm-up pairs are not counted
    assert ratio["pairs"] == 4 and ratio["median"] == 1.5 and ratio["q1"] == 1.5 and ratio["q3"] > 1.5


def test_median_time_skips_the_warm_up_calls():
    timer = Steps([9.0, 9.0, 1.0, 3.0, 2.0])
    assert median_time(timer, steps=3, warmup=2) == 2.0 and timer.calls == 5


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return SimpleNamespace(loss=self.linear(x).sum())


def test_train_step_updates_weights_and_counts_flops():
    torch.manual_seed(0)
    model = Linear()
    before = model.linear.weight.detach().clone()
    step = TrainStep(model, {"x": torch.randn(5, 4)})
    assert step() > 0 and not torch.equal(model.linear.weight, before)
    # forward x @ W^T: 2 * 5 * 4 * 3 = 120; backward: the weight's gradient only (x needs none), 120 more
    assert step.flops() == 240 and model.linear.weight.grad is None


def in_fresh_process(body: str) -> None:
    """Run ``body`` in a new interpreter: resident-memory readings depend on everything a process allocated and
    freed before (the bench, too, measures memory in fresh processes)."""
    import subprocess
    import sys
    import textwrap

    out = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_peak_memory_sees_a_temporary_allocation():
    in_fresh_process("""
        import torch
        from dept_vl.bench.timing import PeakMemory

        with PeakMemory(torch.device("cpu")) as memory:
            block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
            block += 1
            del block
        assert memory.kind == "cpu_peak_rss_above_start" and memory.mb > 40, memory.mb
    """)


def test_steady_rss_returns_freed_blocks_to_the_system():
    in_fresh_process("""
        import platform
        import torch
        from dept_vl.bench.timing import _rss, steady_rss

        assert steady_rss() == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
        before = _rss()
        block = torch.ones(32 * 2**20 // 4)
        assert _rss() - before > 30 * 2**20
        del block
        assert _rss() - before < 2 * 2**20
    """)


def test_peak_sampler_keeps_the_highest_reading_of_each_value():
    import time

    from dept_vl.bench.timing import PeakSampler

    readings = [{"rss": 5, "pss": 4}, {"rss": 9, "pss": 3}, {"rss": 7, "pss": 8}]  # then 1 and 1 forever
    calls = []

    def read():
        calls.append(1)
        return readings[len(calls) - 1] if len(calls) <= len(readings) else {"rss": 1, "pss": 1}

    with PeakSampler(read, 0.001) as sampler:
        deadline = time.time() + 10
        while len(calls) <= len(readings) + 2 and time.time() < deadline:
            time.sleep(0.001)
    assert len(calls) > len(readings) and sampler.peak == {"rss": 9, "pss": 8}
