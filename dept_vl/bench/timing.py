"""Measuring one training step: its seconds (``TrainStep``), paired ratios of two steps that take turns
(``paired_ratio``), and peak memory (``PeakMemory``: the CUDA allocator's peak, or sampled RSS on CPU, through
``PeakSampler``, which samples any readings in a thread)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch

from ..methods import param_groups


class PeakSampler:
    """The peak of each value ``read()`` returns (a dict of numbers), sampled every ``interval`` seconds in a thread
    while the block runs (and once at its start)."""

    def __init__(self, read: Callable[[], dict], interval: float):
        self.read, self.interval, self.peak = read, interval, dict(read())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for key, value in self.read().items():
                self.peak[key] = max(self.peak.get(key, value), value)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class PeakMemory:
    """Peak memory of the block: CUDA allocator peak, or sampled RSS above the starting level on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.kind = "cuda_max_memory_allocated" if self.cuda else "cpu_peak_rss_above_start"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = _rss()
            self._sampler = PeakSampler(lambda: {"rss": _rss()}, 0.001).__enter__()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._sampler.__exit__(*exc)
            self.mb = max(0, self._sampler.peak["rss"] - self.start) / 2**20


def steady_rss() -> bool:
    """Make this process's resident set follow its live memory: glibc's malloc then serves every block over
    64 KiB from its own mapping and returns it on free (by default the threshold moves up as blocks are freed,
    and freed memory stays resident, so peak-RSS readings wander by 10 % and more). False where not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bf16_autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


class TrainStep:
    """One training step (forward, backward, AdamW) of ``model`` on ``batch``; calling it returns its seconds."""

    def __init__(self, model, batch: dict, device: str = "cpu", bf16: bool = False):
        self.device, self.model, self.batch = torch.device(device), model, batch
        self.autocast = lambda: bf16_autocast(self.device, bf16)
        groups = param_groups(model, 0.3, 1e-4, other_lr=1e-4, backbone_lr=1e-4)
        self.optimizer = torch.optim.AdamW(groups, fused=self.device.type == "cuda" or None)

    def __call__(self) -> float:
        self.model.train()
        sync(self.device)
        start = time.perf_counter()
        with self.autocast():
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync(self.device)
        return time.perf_counter() - start

    def flops(self) -> int:
        """FLOPs of forward + backward, counted by torch's FlopCounterMode (the optimizer's are negligible); a compiled
        model is counted running eagerly (the same operations, before fusion)."""
        from torch.utils.flop_counter import FlopCounterMode

        with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter, self.autocast():
            self.model(**self.batch).loss.backward()
        self.model.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def median_time(timer: Callable[[], float], steps: int, warmup: int) -> float:
    """The median of ``steps`` calls of ``timer`` (each returning its seconds) after ``warmup`` untimed ones."""
    return statistics.median([timer() for _ in range(warmup + steps)][warmup:])


def paired_ratio(a: Callable[[], float], b: Callable[[], float], pairs: int, warmup: int) -> dict:
    """time(a) / time(b), the two taking turns (a b b a ...): median and quartiles over ``pairs``."""
    for _ in range(warmup):
        a(), b()
    ratios = []
    for i in range(pairs):
        if i % 2:
            tb, ta = b(), a()
        else:
            ta, tb = a(), b()
        ratios.append(ta / tb)
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "pairs": pairs}
