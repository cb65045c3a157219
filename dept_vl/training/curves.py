"""The learning-curves PNG of a run: the training loss (and each task's, in a multi-task run), and the validation
score (and each task's own metric) when the run validated."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import atomic_write


def series(history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(h["step"], h[key]) for h in history if key in h]


def plot_curves(history: list[dict], path: str | Path, val_keys: Sequence[str] = ("val/score",)) -> None:
    """``history``: the run's log entries (``step`` plus ``loss``, ``loss/<task>``, ``val/...``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_keys = ["loss"] + sorted({k for h in history for k in h if k.startswith("loss/")})
    val_keys = [k for k in val_keys if series(history, k)]
    fig, axes = plt.subplots(1, 2 if val_keys else 1, figsize=(10 if val_keys else 5, 3.5), squeeze=False)
    for key in loss_keys:
        points = series(history, key)
        if points:
            axes[0][0].plot(*zip(*points), label=key.removeprefix("loss/") if key != "loss" else "all tasks")
    axes[0][0].set(xlabel="step", ylabel="training loss", yscale="log" if series(history, "loss") else "linear")
    for key in val_keys:
        axes[0][1].plot(*zip(*series(history, key)), marker="o", label=key.removeprefix("val/"))
    if val_keys:
        axes[0][1].set(xlabel="step", ylabel="validation score")
    for ax in axes[0]:
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
