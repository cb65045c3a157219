"""The learning-curves PNG of a run: training loss, and the validation score when there is one."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_write


def plot_curves(history: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    scores = [(h["step"], h["val/score"]) for h in history if "val/score" in h]
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(10 if scores else 5, 3.5), squeeze=False)
    if losses:
        axes[0][0].plot(*zip(*losses))
    axes[0][0].set(xlabel="step", ylabel="training loss", yscale="log" if losses else "linear")
    if scores:
        axes[0][1].plot(*zip(*scores), marker="o")
        axes[0][1].set(xlabel="step", ylabel="validation score")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
