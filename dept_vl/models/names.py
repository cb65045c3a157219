"""The one parser of the model names a config may hold (timm style: one name, one parse, one factory).

    random                  a random T5 built for the task (text; ``RandomTextConfig``)
    features                precomputed image features (vision)
    efficientnet-lite0      a name registered with ``register_vision_encoder`` (vision)
    timm:<name>             any timm model (vision)
    gguf:<file>             a GGUF causal LM (text)
    hf:<name or path>       a Hugging Face model, said explicitly
    <org>/<name>, ./dir     a Hugging Face hub name or a local directory written by ``save_pretrained``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError

RANDOM = "random"  # text backbone name meaning "a random T5 built for the task" (RandomTextConfig)
FEATURES = "features"  # encoder name meaning "images arrive as precomputed features"
KINDS = ("random", "features", "registered", "timm", "gguf", "hf")


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: its ``kind`` (one of KINDS) and ``ref``, what is left to load it by (a timm name, a
    file, a hub name or path)."""

    kind: str
    ref: str
    text: str  # the name as written

    @property
    def is_local(self) -> bool:
        """It names a directory on this machine (a local Hugging Face model)."""
        return self.kind == "hf" and Path(self.ref).expanduser().is_dir()

    def display(self) -> str:
        """How to show it to a user: a local directory by its last part (the server's paths are its own)."""
        return Path(self.ref).name if self.is_local else self.text


def parse_model_name(name: str, registered: Iterable[str] = (), role: str = "model",
                     bare_hub_names: bool = True) -> ModelName:
    """Parse ``name`` (``role``, e.g. "vision encoder", names it in errors); ``registered``: the names a registry
    holds for this role. A bare word (``t5-base``) is a hub name where ``bare_hub_names``, else unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{role} name must be a non-empty string, got {name!r}")
    if name in (RANDOM, FEATURES):
        return ModelName(name, name, name)
    if name in set(registered):
        return ModelName("registered", name, name)
    for prefix in ("timm:", "gguf:", "hf:"):
        if name.startswith(prefix):
            ref = name[len(prefix):]
            if not ref:
                raise ConfigError(f"{role} {name!r} names nothing after {prefix!r}")
            return ModelName(prefix[:-1], ref, name)
    if bare_hub_names or "/" in name or Path(name).expanduser().is_dir():
        return ModelName("hf", name, name)  # Hugging Face decides whether a hub name exists
    raise ConfigError(f"unknown {role} {name!r}; known: {', '.join([*registered, 'timm:<name>', '<hf name or path>'])}")
