"""A model on disk, whichever the backbone family: the trainable weights and ``dept_vl_config.json``.

    dept_vl_config.json          {"format": "dept-vl", "version", "model": ModelConfig, ...}: written last, so a
                                 directory that has it is complete
    adapter_model.safetensors    the trainable weights (the method's, the projection's), with their checksum;
    model.safetensors            instead, for a method that trains the whole backbone (full fine-tuning)
    adapter_config.json          a native VLM's input method (DePT, ADePT) as a PEFT adapter: ``PeftModel.
                                 from_pretrained(vlm, DIR)`` loads the directory (after ``import dept_vl``)

The other way round, a PEFT adapter directory of DePT / ADePT (``adapter_config.json`` naming its base VLM, as
``Trainer`` / TRL's ``save_model`` write it) is a model directory too: ``read_meta`` describes it as dept-vl would
(``peft_meta``) and ``load_trainable`` maps its tensor names (``prompt_embeddings``) to the model's.

A local backbone (a directory) is recorded by its path and by its path relative to the model directory, so that a
run moved or copied together with its backbone still loads.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from .._version import __version__
from ..errors import CheckpointError
from ..io import load_state_checked, read_json, read_safetensors, write_json, write_safetensors
from ..methods import get_method
from ..methods import DePTConfig
from ..methods.checkpoint import ADAPTER_CONFIG, ADAPTER_WEIGHTS

MODEL_CONFIG_FILE = "dept_vl_config.json"
FULL_WEIGHTS = "model.safetensors"  # what a method that is not adapter-only (full fine-tuning) saves
FORMAT = "dept-vl"
PEFT_METHODS = {"DEPT": "dept", "ADEPT": "adept"}  # a PEFT adapter's peft_type -> dept-vl's method
PEFT_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}


def weights_file(method: str) -> str:
    """``adapter_model.safetensors`` (the trained weights only), or ``model.safetensors`` for a method that trains
    the whole backbone."""
    return ADAPTER_WEIGHTS if get_method(method).adapter_only else FULL_WEIGHTS


def save_trainable(model, directory: str | Path, meta: dict, local: str | None = None) -> None:
    """The trainable weights, then the config (``meta`` plus the format, version and model config); ``local``: the
    model's local backbone directory, recorded relative to ``directory`` too."""
    directory = Path(directory)
    meta = {"format": FORMAT, "version": __version__, "model": model.config.to_dict(), **meta}
    if local is not None and Path(local).is_dir():
        meta["backbone_relative"] = os.path.relpath(Path(local).resolve(), directory.resolve())
    write_safetensors(directory / weights_file(model.config.method), model.trainable_parameters())
    if model.config.vlm is not None and hasattr(getattr(model, "dept", None), "adapter_settings"):
        write_json(directory / ADAPTER_CONFIG, peft_adapter_config(model))
    write_json(directory / MODEL_CONFIG_FILE, meta)


def peft_adapter_config(model) -> dict:
    """A native VLM's input method as PEFT's ``adapter_config.json`` (``DePTPeftConfig`` / ``ADePTPeftConfig``)."""
    return {"peft_type": model.dept.peft_type, **model.dept.adapter_settings(),
            "task_type": PEFT_TASK_TYPES[model.text.kind], "base_model_name_or_path": model.config.vlm}


def is_model_dir(directory: Path) -> bool:
    """A dept-vl model directory, or a PEFT adapter directory of DePT / ADePT."""
    if (directory / MODEL_CONFIG_FILE).is_file():
        return True
    adapter = directory / ADAPTER_CONFIG
    return adapter.is_file() and read_json(adapter).get("peft_type") in PEFT_METHODS


def peft_meta(directory: Path) -> dict:
    """A PEFT adapter directory of DePT / ADePT described as ``dept_vl_config.json`` describes a native VLM's run:
    its base VLM (``base_model_name_or_path``), method and settings."""
    path = directory / ADAPTER_CONFIG
    raw = read_json(path)
    method, base = PEFT_METHODS.get(raw.get("peft_type")), raw.get("base_model_name_or_path")
    if method is None or not base:
        raise CheckpointError(f"{path}: a PEFT adapter of peft_type {raw.get('peft_type')!r} with base model "
                              f"{base!r}; dept-vl loads DEPT and ADEPT adapters that name their base model")
    dept = {f: raw[f] for f in DePTConfig.__dataclass_fields__ if f in raw}
    model = {"vlm": base, "method": method, "dept": dept, **({"adept": {"r": raw.get("adept_r")}} if method == "adept"
                                                             else {})}
    return {"format": FORMAT, "model": model, "hidden_size": dept.get("hidden_size"), "peft": True}


def load_trainable(model, directory: str | Path) -> None:
    """Put the trainable weights saved in ``directory`` into ``model``, naming any weight that is missing or does
    not fit; the frozen parts stay as they are."""
    directory = Path(directory)
    path = directory / weights_file(model.config.method)
    if not path.is_file() and (directory / ADAPTER_WEIGHTS).is_file():
        path = directory / ADAPTER_WEIGHTS  # a full fine-tuning checkpoint of dept-vl 0.1
    weights = read_safetensors(path, finite=True,
                               remedy="load an earlier checkpoint of the run (checkpoints/) or train it again")
    expected = set(model.trainable_parameters())
    load_state_checked(model, own_names(weights, expected), str(path), expected=expected)  # names the file


def own_names(weights: dict, expected: set[str]) -> dict:
    """``weights`` with a PEFT adapter's bare tensor names (``prompt_embeddings``) as the model's
    (``native.dept.prompt_embeddings``) where exactly one of the model's names ends so."""
    def renamed(key: str) -> str:
        if key in expected or "." in key:
            return key
        found = [name for name in expected if name.endswith("." + key)]
        return found[0] if len(found) == 1 else key

    return {renamed(k): v for k, v in weights.items()}


def read_meta(directory: str | Path) -> dict:
    """``dept_vl_config.json`` of a model directory: another ``format`` is refused, a newer ``version`` warned
    about (its settings may mean what this version does not know)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    path = directory / MODEL_CONFIG_FILE
    if not path.is_file() and (directory / ADAPTER_CONFIG).is_file():
        return peft_meta(directory)
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path} holds no model config (is this a dept-vl checkpoint?)")
    if meta.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"{path} is of format {meta.get('format')!r}, not {FORMAT!r}: not a dept-vl checkpoint")
    if _newer(str(meta.get("version", "0")), __version__):
        warnings.warn(f"{path} was written by dept-vl {meta['version']}, newer than this {__version__}: settings it "
                      "added are unknown here; upgrade dept-vl (pip install -U dept-vl)", stacklevel=2)
    return meta


def _newer(version: str, than: str) -> bool:
    """Whether ``version`` is newer than ``than`` (numeric parts compared; anything unreadable is not newer)."""
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", text)[:3])

    return parts(version) > parts(than)


def saved_backbone(path: str, relative: str | None, directory: Path, what: str = "text backbone") -> str:
    """The backbone a checkpoint names: its saved path or hub name, or else, for a local backbone that is no longer
    there (the run was moved or copied elsewhere), the same directory seen from the checkpoint."""
    if relative is None or Path(path).is_dir():
        return path
    moved = Path(os.path.normpath(Path(directory).resolve() / relative))
    if moved.is_dir():
        return str(moved)
    raise CheckpointError(f"{directory}: its {what} is missing: neither {path} nor {moved} exists; copy the "
                          "run's backbone/ back beside it, or pass --backbone PATH")
