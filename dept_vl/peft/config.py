"""``DePTPeftConfig`` and ``ADePTPeftConfig``: DePT and ADePT as PEFT configs (``peft.PeftConfig`` subclasses).

Their method fields are ``DePTConfig``'s own (the same names, defaults and help, taken from it, not copied), so an
``adapter_config.json`` that dept-vl writes and one that PEFT writes hold the same keys; ADePT adds ``adept_r``
(the width of its network; None: the largest at DePT's budget, filled in when the adapter is built). PEFT's fields
(``task_type``, ``base_model_name_or_path``, ``inference_mode``, ...) come from ``PeftConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass

from peft import PeftConfig

from ..methods import ADePTSettings, DePTConfig
from .peft_type import add_peft_type

DEPT = add_peft_type("DEPT")
ADEPT = add_peft_type("ADEPT")
TASK_TYPES = ("CAUSAL_LM", "SEQ_2_SEQ_LM")
PROMPT_FIELDS = tuple(f.name for f in fields(DePTConfig))


class _InputMethodConfig:
    """What both configs share: their method's name and settings, checked on creation as dept-vl checks them."""

    method = "dept"
    peft_type_member = DEPT

    def __post_init__(self):
        self.peft_type = self.peft_type_member
        super().__post_init__()
        self.dept_config()
        self.method_settings()

    def dept_config(self) -> DePTConfig:
        """The prompt's settings as a ``DePTConfig`` (validated there)."""
        return DePTConfig(**{name: getattr(self, name) for name in PROMPT_FIELDS})

    def method_settings(self):
        """The method's own settings section (None: DePT has none beyond ``DePTConfig``)."""
        return None

    def record_built(self, built: DePTConfig, settings) -> None:
        """Keep what building the adapter settled (the width d), so that the saved config rebuilds it."""
        self.hidden_size = built.hidden_size


DePTPeftConfig = make_dataclass(
    "DePTPeftConfig",
    [(f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in fields(DePTConfig)]
    + [("tokenizer_name_or_path", "str | None",
        field(default=None, metadata={"help": "tokenizer for prompt_init='text' (default: the base model's)"}))],
    bases=(_InputMethodConfig, PeftConfig),
    namespace={"__doc__": "DePT as a PEFT method: ``get_peft_model(model, DePTPeftConfig(prompt_length=20, r=8, "
                          "max_length=256, task_type='CAUSAL_LM'))``; the fields of ``DePTConfig`` plus PEFT's.",
               "__module__": __name__},
)


@dataclass
class ADePTPeftConfig(DePTPeftConfig):
    """ADePT as a PEFT method: DePT's prompt fields (``r`` and ``max_length`` set the budget it matches) plus
    ``adept_r``, the width of its token-shared feed-forward network (None: the largest at that budget)."""

    adept_r: int | None = field(default=None, metadata={"help": "width of ADePT's feed-forward network"})
    method = "adept"
    peft_type_member = ADEPT

    def method_settings(self) -> ADePTSettings:
        return ADePTSettings(r=self.adept_r)

    def record_built(self, built: DePTConfig, settings: ADePTSettings) -> None:
        super().record_built(built, settings)
        self.adept_r = settings.r


OFFICIAL = add_peft_type("PROMPT_TUNING_LORA")


@dataclass
class OfficialDePTPeftConfig(DePTPeftConfig):
    """The official DePT code's config (ZhengxiangShi/DePT, ``peft_type: PROMPT_TUNING_LORA``), read as DePT's:
    ``num_virtual_tokens`` is l, ``token_dim`` d; the fields it has that DePT needs not are kept, unused, so that
    ``PeftModel.from_pretrained`` loads an official checkpoint without complaint."""

    num_virtual_tokens: int | None = None
    token_dim: int | None = None
    num_transformer_submodules: int | None = None
    num_attention_heads: int | None = None
    num_layers: int | None = None
    prompt_tuning_init: str | None = None
    prompt_tuning_init_text: str | None = None
    bias: str = "none"
    init_lora_weights: bool = True
    save_lora_embeddings: bool = True
    load_lora_embeddings: bool = True
    load_lora_embedding_B: bool = True
    peft_type_member = OFFICIAL

    def __post_init__(self):
        self.prompt_length = self.num_virtual_tokens or self.prompt_length
        self.hidden_size = self.token_dim or self.hidden_size
        super().__post_init__()
