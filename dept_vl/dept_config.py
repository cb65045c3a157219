"""`DePTConfig`: the hyper-parameters of Decomposed Prompt Tuning, validated on creation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import ConfigError

PROMPT_INITS = ("random", "text", "vocab")


@dataclass
class DePTConfig:
    """Decomposed Prompt Tuning (Shi & Lipani, ICLR 2024).

    The input embeddings X (n x d, n <= max_length) become ``[P ; X + scaling * (A @ B)[:n]]``
    with P (prompt_length x d), A (max_length x r), B (r x d) and ``scaling = lora_alpha / sqrt(r)``.
    """

    prompt_length: int = field(default=60, metadata={"help": "l: number of soft prompt tokens prepended to the input"})
    r: int = field(default=30, metadata={"help": "rank of the low-rank update A @ B; 0 = plain prompt tuning"})
    max_length: int = field(default=256, metadata={"help": "s: longest input (rows of A); longer inputs are an error"})
    lora_alpha: float = field(default=8.0, metadata={"help": "scaling = lora_alpha / sqrt(r) (official default 8)"})
    prompt_init: str = field(default="random", metadata={"help": "random | text | vocab"})
    prompt_init_text: str | None = field(default=None, metadata={"help": "text whose token embeddings initialise P"})
    prompt_init_vocab_top_k: int = field(default=5000, metadata={"help": "vocab init samples ids below this bound"})
    prompt_init_std: float = field(default=1.0, metadata={"help": "std of the random prompt init (official: 1.0)"})
    truncate: bool = field(default=False, metadata={"help": "truncate inputs longer than max_length instead of failing"})
    hidden_size: int | None = field(default=None, metadata={"help": "d; filled in from the backbone when omitted"})

    def __post_init__(self) -> None:
        _require_int(self, "prompt_length", minimum=1)
        _require_int(self, "r", minimum=0)
        _require_int(self, "max_length", minimum=1)
        _require_int(self, "prompt_init_vocab_top_k", minimum=1)
        if self.hidden_size is not None:
            _require_int(self, "hidden_size", minimum=1)
        if not isinstance(self.lora_alpha, (int, float)) or not self.lora_alpha > 0:
            raise ConfigError(f"DePTConfig.lora_alpha must be > 0, got {self.lora_alpha!r}")
        self.lora_alpha = float(self.lora_alpha)
        if not isinstance(self.prompt_init_std, (int, float)) or not self.prompt_init_std > 0:
            raise ConfigError(f"DePTConfig.prompt_init_std must be > 0, got {self.prompt_init_std!r}")
        if self.prompt_init not in PROMPT_INITS:
            raise ConfigError(f"DePTConfig.prompt_init must be one of {', '.join(PROMPT_INITS)}; got {self.prompt_init!r}")
        if self.prompt_init == "text" and not self.prompt_init_text:
            raise ConfigError("DePTConfig.prompt_init='text' needs prompt_init_text")

    @property
    def scaling(self) -> float:
        """The factor on A @ B: lora_alpha / sqrt(r), or 0 when r = 0 (as in the official code)."""
        return self.lora_alpha / math.sqrt(self.r) if self.r > 0 else 0.0

    def num_parameters(self, hidden_size: int | None = None) -> int:
        """l*d + s*r + r*d: the trainable-parameter budget of this configuration."""
        d = hidden_size or self.hidden_size
        if d is None:
            raise ConfigError("num_parameters needs hidden_size")
        return self.prompt_length * d + self.max_length * self.r + self.r * d

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DePTConfig":
        """Build from a dict, naming any key that is not a field (with the closest valid one)."""
        from ._dataclass import from_dict

        return from_dict(cls, data)


def _require_int(cfg: DePTConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"DePTConfig.{name} must be an integer >= {minimum}, got {value!r}")
