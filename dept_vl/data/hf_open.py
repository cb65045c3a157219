"""Hugging Face ``datasets`` input shared by the task loaders and the ``hf`` source format: ``hf:<name>`` or a
``save_to_disk`` directory. Below both tasks/ and sources/ (tasks/own.py reads sources/, so sources/ never imports
tasks/)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, InputError


def is_hf_source(data_dir: str | Path | None) -> bool:
    """True for ``hf:<name>`` and for directories written by ``datasets``' ``save_to_disk``."""
    if data_dir is None:
        return False
    text = str(data_dir)
    path = Path(text)
    return text.startswith("hf:") or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def open_hf_split(source: str, split: str, config: str | None = None):
    """A ``datasets`` split from ``hf:<name>`` (configuration ``config``; the Hub, or the local HF cache when
    offline) or from a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    import datasets

    if source.startswith("hf:"):
        try:
            return datasets.load_dataset(source[3:], config, split=split)
        except Exception as err:  # network, unknown name, unknown split: one clear line
            what = f"{source[3:]!r}" + (f" configuration {config!r}" if config else "")
            raise InputError(f"cannot load Hugging Face dataset {what} split {split!r}: {err}") from None
    loaded = datasets.load_from_disk(source)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ConfigError(f"{source} has no split {split!r}; it has {', '.join(loaded)}")
        return loaded[split]
    return loaded
