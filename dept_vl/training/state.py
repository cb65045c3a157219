"""Resumable training checkpoints: a directory per step, written complete before a pointer names it.

    OUTPUT/checkpoints/step-000500/   the model's trainable weights + config (``save_pretrained``),
                                      train_state.pt (optimizer, scheduler, step, RNG, best score, history)
    OUTPUT/checkpoints/latest         "step-000500": moved only after that directory is complete
    OUTPUT/checkpoints/best           the step with the best validation score (kept by rotation)

A step directory is written under a temporary name, fsynced, then renamed, so a crash at any moment leaves the
previous checkpoint loadable.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import write_dir_atomically, write_text

STATE_FILE = "train_state.pt"
LATEST, BEST = "latest", "best"


def _write_pointer(root: Path, name: str, target: str) -> None:
    write_text(root / name, target + "\n")


def _read_pointer(root: Path, name: str) -> Path | None:
    path = root / name
    if not path.is_file():
        return None
    target = root / path.read_text().strip()
    return target if (target / STATE_FILE).is_file() else None


def save_checkpoint(root: Path, step: int, model, state: dict, keep: int = 2, best: bool = False,
                    extra_files: dict[str, str] | None = None) -> Path:
    """Write ``root/step-<step>`` (weights via ``model.save_pretrained`` + ``state``), move ``latest`` (and
    ``best``) to it, and delete older step directories beyond the ``keep`` newest (never the best one)."""
    root, name = Path(root), f"step-{step:06d}"

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        for filename, text in (extra_files or {}).items():
            write_text(tmp / filename, text)

    write_dir_atomically(root / name, write)
    _write_pointer(root, LATEST, name)
    if best:
        _write_pointer(root, BEST, name)
    protected = {p.name for p in (_read_pointer(root, LATEST), _read_pointer(root, BEST)) if p is not None}
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*.tmp"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    return root / name


def latest_checkpoint(root: Path) -> Path | None:
    """The directory ``latest`` names, else the newest complete step directory, else None."""
    root = Path(root)
    pointed = _read_pointer(root, LATEST)
    if pointed is not None:
        return pointed
    complete = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def best_checkpoint(root: Path) -> Path | None:
    return _read_pointer(Path(root), BEST)


def load_state(directory: Path) -> dict:
    """The training state of a checkpoint directory (read with ``weights_only=True``: no code runs)."""
    try:
        return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a bad checkpoint
        raise CheckpointError(f"cannot read {directory / STATE_FILE}: {err}") from None


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
