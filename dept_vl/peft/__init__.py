"""DePT and ADePT as PEFT methods: ``get_peft_model(model, DePTPeftConfig(...))`` on causal LMs, T5 / BART and
native VLMs; HF ``Trainer`` and TRL's ``SFTTrainer(peft_config=...)`` train them; ``save_pretrained`` writes
dept-vl's adapter format, which ``PeftModel.from_pretrained`` reads back (after ``import dept_vl``), as it reads the
official DePT checkpoints (``PROMPT_TUNING_LORA``)."""

from .config import ADePTPeftConfig, DePTPeftConfig, OfficialDePTPeftConfig
from .register import register
from .tuner import ADePTTuner, InputMethodLayer, InputMethodTuner, OfficialDePTTuner

register()

__all__ = ["ADePTPeftConfig", "ADePTTuner", "DePTPeftConfig", "InputMethodLayer", "InputMethodTuner",
           "OfficialDePTPeftConfig", "OfficialDePTTuner", "register"]
