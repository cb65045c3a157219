"""DePT and ADePT as PEFT methods: ``get_peft_model(model, DePTPeftConfig(...))`` on causal LMs, T5 / BART and
native VLMs; HF ``Trainer`` and TRL's ``SFTTrainer(peft_config=...)`` train them; ``save_pretrained`` writes
dept-vl's adapter format, which ``PeftModel.from_pretrained`` reads back (after ``import dept_vl``)."""

from .config import ADePTPeftConfig, DePTPeftConfig
from .register import register
from .tuner import ADePTTuner, InputMethodLayer, InputMethodTuner

register()

__all__ = ["ADePTPeftConfig", "ADePTTuner", "DePTPeftConfig", "InputMethodLayer", "InputMethodTuner", "register"]
