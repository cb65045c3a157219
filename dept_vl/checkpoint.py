"""Adapter-only checkpoints: safetensors + JSON, written atomically; import of the official DePT format."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .dept_config import DePTConfig
from .errors import CheckpointError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OFFICIAL_WEIGHTS = "adapter_model.bin"
DEPT_PEFT_TYPE = "DEPT"
OFFICIAL_PEFT_TYPE = "PROMPT_TUNING_LORA"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give; mkstemp's temp files are 0600


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, fsync it, then rename it over ``path``.

    A reader sees either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")

    atomic_write(path, write)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})}))


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent} (is this a dept-vl checkpoint directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None


def _checkpoint_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    return directory


# ---- the DePT module alone --------------------------------------------------------------------
def save_dept(dept, directory: str | Path) -> None:
    """``adapter_model.safetensors`` first, then ``adapter_config.json``: the config marks a complete save."""
    directory = Path(directory)
    write_safetensors(directory / ADAPTER_WEIGHTS, dept.state_dict())
    write_json(directory / ADAPTER_CONFIG, {"peft_type": DEPT_PEFT_TYPE, **dept.config.to_dict()})


def load_dept(directory: str | Path, hidden_size: int | None = None):
    """Load a dept-vl or an official DePT checkpoint directory into a ``DePT`` module."""
    from .dept import DePT

    directory = _checkpoint_dir(directory)
    raw = read_json(directory / ADAPTER_CONFIG)
    peft_type = raw.pop("peft_type", None)
    if peft_type == OFFICIAL_PEFT_TYPE:
        config, state = _read_official(directory, raw)
    elif peft_type == DEPT_PEFT_TYPE:
        config, state = DePTConfig.from_dict(raw), read_safetensors(directory / ADAPTER_WEIGHTS)
    else:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG} has peft_type {peft_type!r}; expected "
                              f"{DEPT_PEFT_TYPE!r} or the official {OFFICIAL_PEFT_TYPE!r}")
    if hidden_size is not None and config.hidden_size != hidden_size:
        raise CheckpointError(f"checkpoint {directory} has hidden size {config.hidden_size}, "
                              f"but the model's is {hidden_size}")
    dept = DePT(config)
    load_state_checked(dept, state, str(directory))
    return dept


def _read_official(directory: Path, raw: dict) -> tuple[DePTConfig, dict[str, torch.Tensor]]:
    """The official format: PEFT-style config + ``adapter_model.bin`` saved from CUDA tensors."""
    weights = directory / OFFICIAL_WEIGHTS
    if (directory / ADAPTER_WEIGHTS).is_file():
        state = read_safetensors(directory / ADAPTER_WEIGHTS)
    elif weights.is_file():
        try:  # never unpickle code; the official file holds CUDA tensors
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
            raise CheckpointError(f"cannot read {weights}: {err}") from None
    else:
        raise CheckpointError(f"official DePT checkpoint {directory} has no {OFFICIAL_WEIGHTS}")

    def find(suffix: str) -> torch.Tensor | None:
        hits = [v for k, v in state.items() if k.endswith(suffix)]
        return hits[0].float() if hits else None

    prompt = find("prompt_embeddings")
    if prompt is None:
        raise CheckpointError(f"{weights} has no prompt_embeddings (keys: {sorted(state)})")
    lora_a, lora_b = find("lora_embedding_A"), find("lora_embedding_B")
    r = int(raw.get("r", 0)) if lora_a is not None else 0
    config = DePTConfig(
        prompt_length=prompt.shape[0],
        r=r,
        max_length=int(raw.get("max_length", lora_a.shape[0] if lora_a is not None else 256)),
        lora_alpha=float(raw.get("lora_alpha", 8)),
        hidden_size=int(raw.get("token_dim") or prompt.shape[1]),
    )
    new_state = {"prompt_embeddings": prompt}
    if r > 0:
        new_state.update(lora_embedding_A=lora_a, lora_embedding_B=lora_b)
    return config, new_state


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                       expected: set[str] | None = None) -> None:
    """Load ``state`` into ``module``, naming the first key or shape that does not fit.

    ``expected``: the keys the checkpoint must hold (default: all of the module's state); other
    weights of the module (a frozen backbone) are left as they are.
    """
    own = module.state_dict()
    expected = set(own) if expected is None else expected
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected weight {key!r} for this model")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: weight {key!r} has shape {tuple(value.shape)}, "
                                  f"the model expects {tuple(own[key].shape)}")
    missing = sorted(k for k in expected if k not in state)
    if missing:
        raise CheckpointError(f"{source}: missing weight {missing[0]!r}")
    module.load_state_dict(state, strict=expected == set(own))
