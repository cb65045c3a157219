"""`DePTConfig`: the hyper-parameters of Decomposed Prompt Tuning, validated on creation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .._dataclass import check_choice, check_int, check_number, from_dict, setting
from ..errors import ConfigError

PROMPT_INITS = ("random", "text", "vocab")


@dataclass
class DePTConfig:
    """Decomposed Prompt Tuning (Shi & Lipani, ICLR 2024).

    The input embeddings X (n x d, n <= max_length) become ``[P ; X + scaling * (A @ B)[:n]]``
    with P (prompt_length x d), A (max_length x r), B (r x d) and ``scaling = lora_alpha / sqrt(r)``.
    """

    prompt_length: int = setting(60, "l: number of soft prompt tokens prepended to the input")
    r: int = setting(30, "rank of the low-rank update A @ B; 0 = plain prompt tuning")
    max_length: int = setting(256, "s: longest input (rows of A); longer inputs are an error")
    lora_alpha: float = setting(8.0, "scaling = lora_alpha / sqrt(r) (official default 8)")
    prompt_init: str = setting("random", "random | text | vocab")
    prompt_init_text: str | None = setting(None, "text whose token embeddings initialise P")
    prompt_init_vocab_top_k: int = setting(5000, "vocab init samples ids below this bound")
    prompt_init_std: float = setting(1.0, "std of the random prompt init (official: 1.0)")
    truncate: bool = setting(False, "truncate inputs longer than max_length instead of failing")
    hidden_size: int | None = setting(None, "d; filled in from the backbone when omitted")
    num_prompts: int = setting(1, "separate prompts P, one per task of a multi-task model, sharing A and B")

    def __post_init__(self) -> None:
        for name, minimum in (("prompt_length", 1), ("r", 0), ("max_length", 1), ("prompt_init_vocab_top_k", 1),
                              ("num_prompts", 1)):
            check_int(f"DePTConfig.{name}", getattr(self, name), minimum)
        if self.hidden_size is not None:
            check_int("DePTConfig.hidden_size", self.hidden_size, 1)
        self.lora_alpha = check_number("DePTConfig.lora_alpha", self.lora_alpha, above=0)
        check_number("DePTConfig.prompt_init_std", self.prompt_init_std, above=0)
        check_choice("DePTConfig.prompt_init", self.prompt_init, PROMPT_INITS)
        if self.prompt_init == "text" and not self.prompt_init_text:
            raise ConfigError("DePTConfig.prompt_init='text' needs prompt_init_text")

    @property
    def scaling(self) -> float:
        """The factor on A @ B: lora_alpha / sqrt(r), or 0 when r = 0 (as in the official code)."""
        return self.lora_alpha / math.sqrt(self.r) if self.r > 0 else 0.0

    def num_parameters(self, hidden_size: int | None = None) -> int:
        """l*d + s*r + r*d: the trainable-parameter budget of this configuration (l*d once per prompt)."""
        d = hidden_size or self.hidden_size
        if d is None:
            raise ConfigError("num_parameters needs hidden_size")
        return self.num_prompts * self.prompt_length * d + self.max_length * self.r + self.r * d

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DePTConfig":
        """Build from a dict, naming any key that is not a field (with the closest valid one)."""
        return from_dict(cls, data)

