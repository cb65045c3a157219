"""The on-disk format of a DePT adapter: dept-vl's own, and import of the official ZhengxiangShi/DePT format.

dept-vl writes ``adapter_model.safetensors`` (P, A, B) and then ``adapter_config.json`` (``peft_type: DEPT`` +
the DePTConfig); the config marks a complete save. The official code saves PEFT-style: ``adapter_config.json``
with ``peft_type: PROMPT_TUNING_LORA`` and ``adapter_model.bin`` holding ``prompt_embeddings`` and
``prompt_encoder.lora_embedding_A/B``, pickled from CUDA tensors (read onto the CPU, never executing code).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import read_json, read_safetensors, write_json, write_safetensors
from .config import DePTConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OFFICIAL_WEIGHTS = "adapter_model.bin"
DEPT_PEFT_TYPE = "DEPT"
OFFICIAL_PEFT_TYPE = "PROMPT_TUNING_LORA"


def save_adapter(directory: str | Path, config: DePTConfig, state: dict[str, torch.Tensor]) -> None:
    """``adapter_model.safetensors`` first, then ``adapter_config.json``: the config marks a complete save."""
    directory = Path(directory)
    write_safetensors(directory / ADAPTER_WEIGHTS, state)
    write_json(directory / ADAPTER_CONFIG, {"peft_type": DEPT_PEFT_TYPE, **config.to_dict()})


def read_adapter(directory: str | Path, hidden_size: int | None = None) -> tuple[DePTConfig, dict[str, torch.Tensor]]:
    """The config and weights of a dept-vl or an official DePT checkpoint directory; ``hidden_size`` (the
    model's width), when given, must be the checkpoint's."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    raw = read_json(directory / ADAPTER_CONFIG)
    peft_type = raw.pop("peft_type", None)
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
