"""The on-disk format of a DePT adapter: dept-vl's own, and import of the official ZhengxiangShi/DePT format.

dept-vl writes ``adapter_model.safetensors`` (P, A, B) and then ``adapter_config.json`` (``peft_type: DEPT`` +
the DePTConfig); the config marks a complete save. The official code saves PEFT-style: ``adapter_config.json``
with ``peft_type: PROMPT_TUNING_LORA`` and ``adapter_model.bin`` holding ``prompt_embeddings`` and
``prompt_encoder.lora_embedding_A/B``, pickled from CUDA tensors (read onto the CPU, never executing code).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import check_tensors, local_or_hub, read_json, read_safetensors, write_json, write_safetensors
from .config import DePTConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OFFICIAL_WEIGHTS = "adapter_model.bin"
DEPT_PEFT_TYPE = "DEPT"
OFFICIAL_PEFT_TYPE = "PROMPT_TUNING_LORA"
# what PEFT adds to an adapter_config.json that DePTPeftConfig / ADePTPeftConfig write (dept_vl.peft): not the method's
PEFT_KEYS = ("auto_mapping", "base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version",
             "tokenizer_name_or_path")


def save_adapter(directory: str | Path, peft_type: str, config: dict, state: dict[str, torch.Tensor]) -> None:
    """``adapter_model.safetensors`` first, then ``adapter_config.json`` (``peft_type`` + ``config``): the config
    marks a complete save."""
    directory = Path(directory)
    write_safetensors(directory / ADAPTER_WEIGHTS, state)
    write_json(directory / ADAPTER_CONFIG, {"peft_type": peft_type, **config})


def method_settings(raw: dict) -> dict:
    """An adapter_config.json's content without PEFT's own keys (those a PEFT-written adapter adds)."""
    return {k: v for k, v in raw.items() if k not in PEFT_KEYS}


def read_native_adapter(directory: str | Path, peft_type: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config (without ``peft_type``) and weights of a dept-vl adapter directory (or Hub repository) of
    ``peft_type``."""
    directory = local_or_hub(directory, "adapter")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    raw = method_settings(read_json(directory / ADAPTER_CONFIG))
    found = raw.pop("peft_type", None)
    if found != peft_type:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG} has peft_type {found!r}; expected {peft_type!r}")
    return raw, read_safetensors(directory / ADAPTER_WEIGHTS, finite=True, remedy="save or train the adapter again")


def read_adapter(directory: str | Path, hidden_size: int | None = None) -> tuple[DePTConfig, dict[str, torch.Tensor]]:
    """The config and weights of a dept-vl or an official DePT checkpoint directory (or Hugging Face Hub repository:
    ``user/repo``); ``hidden_size`` (the model's width), when given, must be the checkpoint's."""
    directory = local_or_hub(directory, "adapter")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    raw = read_json(directory / ADAPTER_CONFIG)
    peft_type = raw.pop("peft_type", None)
    if peft_type == DEPT_PEFT_TYPE:
        raw = method_settings(raw)
    if peft_type == OFFICIAL_PEFT_TYPE:
        config, state = _read_official(directory, raw)
    elif peft_type == DEPT_PEFT_TYPE:
        config, state = DePTConfig.from_dict(raw), read_safetensors(directory / ADAPTER_WEIGHTS, finite=True,
                                                                    remedy="save or train the adapter again")
    else:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG} has peft_type {peft_type!r}; expected "
                              f"{DEPT_PEFT_TYPE!r} or the official {OFFICIAL_PEFT_TYPE!r}")
    if hidden_size is not None and config.hidden_size != hidden_size:
        raise CheckpointError(f"checkpoint {directory} has hidden size {config.hidden_size}, "
                              f"but the model's is {hidden_size}")
    return config, state


def _read_official(directory: Path, raw: dict) -> tuple[DePTConfig, dict[str, torch.Tensor]]:
    """The official format: PEFT-style config + ``adapter_model.bin`` saved from CUDA tensors, checked as the native
    format is: tensors only, the shapes of P, A and B, finite values."""
    weights = directory / OFFICIAL_WEIGHTS
    if (directory / ADAPTER_WEIGHTS).is_file():
        weights, state = directory / ADAPTER_WEIGHTS, read_safetensors(directory / ADAPTER_WEIGHTS)
    elif weights.is_file():
        state = _unpickle_tensors(weights)
    else:
        raise CheckpointError(f"official DePT checkpoint {directory} has no {OFFICIAL_WEIGHTS}")
    prompt, lora_a, lora_b = (_find(state, weights, key) for key in
                              ("prompt_embeddings", "lora_embedding_A", "lora_embedding_B"))
    if prompt is None:
        raise CheckpointError(f"{weights} has no prompt_embeddings (keys: {sorted(state)})")
    _check_official_shapes(weights, prompt, lora_a, lora_b)
    r = int(raw.get("r", lora_a.shape[1])) if lora_a is not None else 0
    try:
        config = DePTConfig(prompt_length=prompt.shape[0], r=r, lora_alpha=float(raw.get("lora_alpha", 8)),
                            max_length=int(raw.get("max_length", lora_a.shape[0] if lora_a is not None else 256)),
                            hidden_size=int(raw.get("token_dim") or prompt.shape[1]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG}: {err}") from None
    state = {"prompt_embeddings": prompt, **({"lora_embedding_A": lora_a, "lora_embedding_B": lora_b} if r else {})}
    check_tensors(weights, state, None, finite=True, remedy="it cannot be used; get a good copy of the checkpoint")
    return config, state


def _unpickle_tensors(path: Path) -> dict:
    """The tensors of a pickled state dict, read onto the CPU without running any code it holds."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot read {path}: it holds Python objects other than tensors, and dept-vl never "
                              "runs code from a checkpoint (refused)") from None
    except Exception as err:  # noqa: BLE001 - any other unpickling failure is a bad checkpoint
        raise CheckpointError(f"cannot read {path}: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds {type(state).__name__}, not a dictionary of tensors")
    return state


def _find(state: dict, path: Path, suffix: str) -> torch.Tensor | None:
    """The float tensor of ``state`` whose key ends in ``suffix`` (None: there is none)."""
    hits = [(k, v) for k, v in state.items() if str(k).endswith(suffix)]
    if not hits:
        return None
    key, value = hits[0]
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise CheckpointError(f"{path}: {key} is {type(value).__name__ if not isinstance(value, torch.Tensor) else value.dtype}, "
                              "not a tensor of floats")
    return value.float()


def _check_official_shapes(path: Path, prompt, lora_a, lora_b) -> None:
    """P is (l, d); A (s, r) and B (r, d) come together and fit P's width and each other's rank."""
    if prompt.dim() != 2:
        raise CheckpointError(f"{path}: prompt_embeddings has shape {tuple(prompt.shape)}; expected (l, d)")
    if (lora_a is None) != (lora_b is None):
        raise CheckpointError(f"{path}: lora_embedding_{'A' if lora_a is not None else 'B'} without its pair")
    if lora_a is not None and (lora_a.dim() != 2 or lora_b.dim() != 2 or lora_a.shape[1] != lora_b.shape[0]
                               or lora_b.shape[1] != prompt.shape[1]):
        raise CheckpointError(f"{path}: lora_embedding_A {tuple(lora_a.shape)} and lora_embedding_B "
                              f"{tuple(lora_b.shape)} do not fit prompt_embeddings {tuple(prompt.shape)} (expected "
                              "(s, r), (r, d) and (l, d))")
