"""Progress: a bar on a terminal, plain lines at a modest rate in a file."""

import pytest

from dept_vl.progress import LineProgress, duration, progress


def test_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 40.0, 41.0, 41.0])
    monkeypatch.setattr("dept_vl.progress.time.time", lambda: next(clock))
    bar = progress(total=100, desc="train dept", unit="step")  # capsys: stderr is no terminal
    assert isinstance(bar, LineProgress) and bar.interval == 30.0
    bar.update(10)  # the first update is written (t = 10 s)
    bar.set_postfix(loss="0.150", lr="0.3")
    bar.update(10)  # t = 20: too soon
    bar.update(20)  # t = 40: written
    bar.update(5)  # t = 41: too soon
    bar.close()  # t = 41: the end is written
    assert capsys.readouterr().err.splitlines() == [
        "train dept: step 10/100 (10%), 1.0 step/s, ETA 1m30s",
        "train dept: step 40/100 (40%), 1.0 step/s, ETA 1m00s, loss=0.150, lr=0.3 (at step 10)",  # said when stale
        "train dept: step 45/100 (45%), 1.1 step/s, ETA 50s, loss=0.150, lr=0.3 (at step 10)"]


def test_nothing_written_for_a_bar_that_never_moved_or_is_disabled(capsys):
    progress(total=5, desc="x").close()
    off = progress(total=5, desc="x", disable=True)
    off.update(5)
    off.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seconds,text", [(12.4, "12s"), (245, "4m05s"), (7380, "2h03m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_a_single_update_is_written_once(capsys):
    bar = progress(total=1, desc="test", unit="batch")
    bar.update(1)
    bar.close()
    assert len(capsys.readouterr().err.splitlines()) == 1
