"""Sequence-length buckets: a compiled model sees a bounded number of shapes.

A batch's text (or target) length ``n`` is rounded up to ``bucket_length(n, multiple)``: the next power of two up to
``multiple``, then the next multiple of ``multiple`` (1, 2, 4, 8, 16, 24, ... for 8), never above the cap. The
added columns are padding: masked in attention, -100 in labels, and DePT's A never meets them (``DePT.forward``
zeroes its update where the mask is 0).
"""

from __future__ import annotations

import torch


def bucket_length(n: int, multiple: int, cap: int | None = None) -> int:
    """The padded length of a batch whose longest sequence has ``n`` tokens (at least ``n``; ``cap`` bounds it
    unless ``n`` itself is longer)."""
    if n <= 0:
        return n
    power = 1 << (n - 1).bit_length()
    length = power if power <= multiple else -(-n // multiple) * multiple
    return max(n, min(length, cap)) if cap else length


def pad_to_length(tensor: torch.Tensor, length: int, value: int, left: bool = False) -> torch.Tensor:
    """``tensor`` (batch, n) right-padded (``left``: left-padded) with ``value`` to (batch, length)."""
    extra = length - tensor.shape[1]
    if extra <= 0:
        return tensor
    pad = tensor.new_full((tensor.shape[0], extra), value)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)


def bucket_text(batch: dict[str, torch.Tensor], multiple: int, cap: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` of ``batch`` padded to their bucket (pad id / mask 0)."""
    length = bucket_length(batch["input_ids"].shape[1], multiple, cap)
    return {**batch, "input_ids": pad_to_length(batch["input_ids"], length, pad_id),
            "attention_mask": pad_to_length(batch["attention_mask"], length, 0)}


def bucket_labels(labels: torch.Tensor, multiple: int, cap: int) -> torch.Tensor:
    """``labels`` padded to their bucket with -100 (ignored by the loss)."""
    return pad_to_length(labels, bucket_length(labels.shape[1], multiple, cap), -100)


def bucket_per_token(batch: dict, pad_values: dict[str, int], multiple: int, left: bool) -> dict:
    """Every input of ``batch`` named in ``pad_values`` and as long as ``input_ids`` padded with its value to their
    bucket (``left``: on the left, as a decoder-only model's batch is padded)."""
    n = batch["input_ids"].shape[1]
    length = bucket_length(n, multiple)
    return {k: pad_to_length(v, length, pad_values[k], left) if k in pad_values and isinstance(v, torch.Tensor)
            and v.dim() == 2 and v.shape[1] == n else v for k, v in batch.items()}
