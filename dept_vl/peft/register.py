"""Registration of DePT and ADePT with PEFT (``import dept_vl`` runs it once)."""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import register_peft_method

from .config import ADePTPeftConfig, DePTPeftConfig, OfficialDePTPeftConfig
from .tuner import ADePTTuner, InputMethodTuner, OfficialDePTTuner


def register() -> None:
    """``get_peft_model``, ``PeftConfig.from_pretrained`` and ``PeftModel.from_pretrained`` know ``DEPT`` and
    ``ADEPT``, and the official DePT checkpoints' ``PROMPT_TUNING_LORA``, after this (a second call changes
    nothing)."""
    for name, config_cls, tuner_cls in (("dept", DePTPeftConfig, InputMethodTuner),
                                        ("adept", ADePTPeftConfig, ADePTTuner),
                                        ("prompt_tuning_lora", OfficialDePTPeftConfig, OfficialDePTTuner)):
        if name.upper() not in PEFT_TYPE_TO_CONFIG_MAPPING:
            register_peft_method(name=name, config_cls=config_cls, model_cls=tuner_cls)
