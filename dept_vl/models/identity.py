"""What identifies a frozen backbone, so that runs on the same one can share one copy of it (``dept-vl serve
--adapter a=RUN1 --adapter b=RUN2``): a hub name by its name; a local directory (or file) by a checksum of its weight
and tokenizer files, never by its path (two offline-default runs of one task share one)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .names import parse_model_name

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf", "tokenizer.json", "*.model", "vocab.json")


def fingerprint(name: str, role: str) -> str:
    """``hf:NAME`` / ``gguf:NAME`` for a name that is not on disk; ``weights:<checksum>`` for a local one."""
    parsed = parse_model_name(name, role=role)
    path = Path(parsed.ref if parsed.kind in ("hf", "gguf") else name)
    if not path.exists():
        return f"{parsed.kind}:{name}"
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for pattern in WEIGHT_FILES for p in path.glob(pattern))
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"weights:{digest.hexdigest()[:16]}"
