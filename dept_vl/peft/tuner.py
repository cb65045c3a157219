"""``InputMethodTuner``: the PEFT tuner (a ``BaseTuner``) of DePT and ADePT.

PEFT's own prompt methods are hard-coded inside ``PeftModel``; this tuner instead puts the input method in front of
the model the way dept-vl always does (``methods.build_input_method`` + ``methods.wrap_input_method``): on the input
embeddings of a text model (``DePTWrapper``), or for a native VLM on its language model's input after the image
merge (``NativeVLMWrapper``: placeholder slots, token types extended, a pre-hook). ``PeftModelForCausalLM`` /
``PeftModelForSeq2SeqLM`` call the tuner's ``forward`` and ``generate``, which go through the active adapter's
wrapper (or straight to the bare model while adapters are disabled).

The adapters live in one ``InputMethodLayer`` (a ``BaseTunerLayer``, so PEFT's status, enable / disable and
set_adapter machinery sees them); the wrappers are kept outside the module tree, so the model is held once (its
state dict has no shared tensors). Checkpoint keys are the method's own tensor names (``prompt_embeddings``,
``lora_embedding_A``, ``lora_embedding_B``; ADePT's ``ffn_*``): dept-vl's adapter format.
"""

from __future__ import annotations

import dataclasses

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from torch import nn
from transformers import AutoTokenizer

from ..errors import ConfigError
from ..methods import DePTWrapper, build_input_method, resolved_settings, wrap_input_method
from ..methods.native import native_family
from .config import TASK_TYPES

LAYER = "dept_layer"  # the tuner's child holding the adapters
PROMPTS = "dept_prompts"  # the layer's ModuleDict: adapter name -> SoftPrompt
# a dept-vl native run's tensor names (NativeVisionLanguageModel: the method, the VLM's projector when trained) ->
# PEFT's checkpoint names
RUN_NAMES = (("native.dept.", ""), ("native.model.", "base_model.model."))


class InputMethodLayer(nn.Module, BaseTunerLayer):
    """The input methods of a PEFT model, one per adapter name (nothing of the base model inside)."""

    adapter_layer_names = (PROMPTS,)

    def __init__(self):
        super().__init__()
        self.dept_prompts = nn.ModuleDict()
        self._active_adapter = []
        self.merged_adapters = []

    def get_base_layer(self) -> nn.Module:
        return self


class InputMethodTuner(BaseTuner):
    """DePT / ADePT for ``get_peft_model`` (see the module docstring)."""

    prefix = "dept_"
    tuner_layer_cls = InputMethodLayer
    target_module_mapping: dict = {}

    # ---- adding an adapter ---------------------------------------------------------------------------------
    def inject_adapter(self, model: nn.Module, adapter_name: str, autocast_adapter_dtype: bool = True,
                       low_cpu_mem_usage: bool = False, state_dict=None) -> None:
        """Build the adapter ``adapter_name`` for ``model`` and its wrapper (the first becomes the active one)."""
        config = self.peft_config[adapter_name]
        if str(config.task_type) not in TASK_TYPES:
            raise ConfigError(f"{type(config).__name__} needs task_type 'CAUSAL_LM' (decoder-only LMs and VLMs) or "
                              f"'SEQ_2_SEQ_LM' (T5, BART), got {config.task_type!r}")
        family = native_family(model)
        dept = config.dept_config()
        if config.inference_mode:  # the weights come from a checkpoint: no tokenizer needed to initialise P
            dept = dataclasses.replace(dept, prompt_init="random")
        tokenizer = self._tokenizer(config, model) if dept.prompt_init == "text" else None
        adapter = build_input_method(config.method, dept, config.method_settings(), model.get_input_embeddings(),
                                     tokenizer)
        config.record_built(*resolved_settings(adapter))
        if LAYER not in self._modules:
            self.dept_layer = InputMethodLayer()
            self._wrappers, self._disabled = {}, False
        self.dept_layer.dept_prompts[adapter_name] = adapter
        self._wrappers[adapter_name] = wrap_input_method(model, adapter, config.method, family)
        model.requires_grad_(False)
        if not self.dept_layer.active_adapters:
            self.dept_layer.set_adapter(adapter_name, inference_mode=config.inference_mode)
        else:
            adapter.requires_grad_(False)

    @staticmethod
    def _tokenizer(config, model: nn.Module):
        source = config.tokenizer_name_or_path or config.base_model_name_or_path or getattr(model, "name_or_path", "")
        if not source:
            raise ConfigError("prompt_init='text' needs a tokenizer: set tokenizer_name_or_path")
        return AutoTokenizer.from_pretrained(source)

    def _create_and_replace(self, *args, **kwargs):  # nothing in the model is replaced
        raise NotImplementedError

    # ---- the calls -------------------------------------------------------------------------------------------
    def _route(self) -> nn.Module:
        """The bare model while adapters are disabled, else the active adapter's wrapper."""
        if self._disabled:
            return self.model
        return self._wrappers[self.active_adapter]

    def forward(self, *args, **kwargs):
        return self._route()(*args, **{k: v for k, v in kwargs.items() if v is not None})

    def generate(self, *args, **kwargs):
        """What the bare model's ``generate`` returns: for a decoder-only text model the prompt's ids, then the
        new tokens (its wrapper generates from embeddings, which gives the new tokens only)."""
        route = self._route()
        out = route.generate(*args, **kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(route, DePTWrapper) and not route.is_encoder_decoder and isinstance(out, torch.Tensor) \
                and ids is not None:
            return torch.cat([ids.to(out.device), out], 1)
        return out

    @property
    def method_name(self) -> str:
        """The active adapter's method (``dept_vl.param_groups`` reads it)."""
        return self.peft_config[self.active_adapter].method

    # ---- PEFT's adapter management, on the layer ---------------------------------------------------------------
    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        self.dept_layer.enable_adapters(enabled)
        self._disabled = not enabled

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) != 1 or names[0] not in self.dept_layer.dept_prompts:
            raise ConfigError(f"set one adapter of {sorted(self.dept_layer.dept_prompts)}, got {adapter_name!r}: an "
                              "input sequence takes one input method at a time")
        self.dept_layer.set_adapter(names, inference_mode=inference_mode)
        self.active_adapter = names[0]

    def merge_and_unload(self, *args, **kwargs):
        raise ConfigError("DePT and ADePT change the input sequence (a prompt is prepended): there are no weights to "
                          "merge them into; use unload() for the bare model")

    merge_adapter = merge_and_unload

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name == self.active_adapter:
            raise ConfigError(f"adapter {adapter_name!r} is the active one: set another first")
        del self.peft_config[adapter_name], self.dept_layer.dept_prompts[adapter_name], self._wrappers[adapter_name]

    # ---- checkpoints: the method's own tensor names ------------------------------------------------------------
    @staticmethod
    def _key_prefix(adapter_name: str) -> str:
        return f"{LAYER}.{PROMPTS}.{adapter_name}."

    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        prefix = cls._key_prefix(adapter_name)
        return {k: v for k, v in state_dict.items() if prefix in k}

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        return key.rpartition(cls._key_prefix(adapter_name))[2]

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        """Checkpoint names (PEFT's, or a dept-vl native run's) -> the model's."""
        model_keys = {cls._remove_adapter_name_from_key(k, adapter_name): k for k in model.state_dict()
                      if cls._key_prefix(adapter_name) in k}
        out = {}
        for key, value in state_dict.items():
            for run_prefix, peft_prefix in RUN_NAMES:
                if key.startswith(run_prefix):
                    key = peft_prefix + key.removeprefix(run_prefix)
            leaf = key.rpartition(".")[2]  # the official code's prompt_encoder.lora_embedding_A, ...
            out[model_keys.get(key, model_keys.get(leaf, key))] = value
        return out



class ADePTTuner(InputMethodTuner):
    """The same tuner under ADePT's PEFT prefix (PEFT wants one prefix per method)."""

    prefix = "adept_"


class OfficialDePTTuner(InputMethodTuner):
    """The same tuner for the official DePT checkpoints (``PROMPT_TUNING_LORA``)."""

    prefix = "prompt_tuning_lora_"
