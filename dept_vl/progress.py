"""Progress that reads well both on a terminal and in a log file.

On a terminal, ``progress(...)`` is a tqdm bar. When stderr is not a terminal (output redirected to a file, CI, a
job scheduler), a bar would write thousands of carriage-return frames on one line; there it is a ``LineProgress``
instead, which writes a plain line now and then: ``train dept: step 1200/3000 (40%), 12.5 step/s, ETA 2m24s,
loss=0.149, lr=0.17`` (the first update, then at most every ``DEPT_VL_LOG_SECONDS`` seconds, default 30, and the
end); a loss logged at an earlier step than the line's says so: ``loss=0.149, lr=0.17 (at step 1180)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from tqdm.auto import tqdm


_QUIET = [0]  # > 0 inside ``quiet()``


@contextlib.contextmanager
def quiet():
    """No progress, ours or transformers' bars, while the block runs (``train(recipe, progress=False)``)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    _QUIET[0] += 1
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        _QUIET[0] -= 1
        if was_enabled and not _QUIET[0]:
            hf_logging.enable_progress_bar()


def progress(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False,
             leave: bool = True):
    """A tqdm-like progress object (``update``, ``set_postfix``, ``close``) fit for where stderr goes (nothing
    inside ``quiet()``)."""
    disable = disable or _QUIET[0] > 0
    if disable or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, leave=leave)
    return LineProgress(total, desc, unit, initial, float(os.environ.get("DEPT_VL_LOG_SECONDS", 30)))


class LineProgress:
    """Plain progress lines on stderr, at a modest rate."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0, interval: float = 30.0):
        self.total, self.desc, self.unit, self.n, self.interval = total, desc, unit, initial, interval
        self.start_n, self.started, self.last, self.written_n = initial, time.time(), None, None
        self.postfix, self.postfix_at = "", initial

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.time()
        if self.last is None or now - self.last >= self.interval:
            self.write(now)

    def set_postfix(self, **values) -> None:
        self.postfix, self.postfix_at = ", ".join(f"{k}={v}" for k, v in values.items()), self.n

    def close(self) -> None:
        if self.n > self.start_n and self.n != self.written_n:  # the end, unless that line was just written
            self.write(time.time())

    def line(self, now: float) -> str:
        rate = (self.n - self.start_n) / max(now - self.started, 1e-9)
        parts = [f"{self.desc}: {self.unit} {self.n}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {duration((self.total - self.n) / rate)}")
        if self.postfix:  # values measured at an earlier step say which
            parts.append(self.postfix + (f" (at {self.unit} {self.postfix_at})" if self.postfix_at != self.n else ""))
        return ", ".join(parts)

    def write(self, now: float) -> None:
        self.last, self.written_n = now, self.n
        print(self.line(now), file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``2h03m``, ``4m05s`` or ``12s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
