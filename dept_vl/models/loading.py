"""Loading a user's pretrained model (``from_pretrained``) with one clear line for what goes wrong: a directory that
does not exist, weights that are corrupt or truncated (naming the file), a model of the wrong kind (a text-only model
where a vision-language model is asked for), or anything else transformers says, shortened to one line."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError, ConfigError
from ..io import HUB_NAME


def looks_local(name: str) -> bool:
    """True for what can only be a path (absolute, ``./``, ``~``, or not a Hub name), not ``user/repo``."""
    text = str(name)
    return text.startswith(("/", ".", "~")) or ("/" in text and not HUB_NAME.fullmatch(text))


@contextlib.contextmanager
def pretrained_errors(what: str, name: str, vlm: bool = False, hint: str = "") -> Iterator[None]:
    """Around ``from_pretrained(name)``: a ConfigError / CheckpointError of one line for the user's mistakes.
    ``what``: how the message names the model (``text backbone``, ``the vision-language model``); ``vlm``: it must
    be an image-text-to-text model; ``hint``: what ``name`` may be, said when loading fails otherwise."""
    if looks_local(name) and not Path(name).expanduser().exists():
        raise ConfigError(f"cannot load {what} {name!r}: the directory {name} does not exist")
    try:
        yield
    except SafetensorError as err:
        raise CheckpointError(f"{what} {name}: {bad_weights(Path(name))} is corrupt or truncated ({err}); "
                              "save or download the model again") from None
    except (OSError, ValueError, KeyError) as err:
        kind = not_a_vlm(name) if vlm else None
        if kind:
            raise ConfigError(f"{name} is not a vision-language model: {kind}; --vlm takes an image-text-to-text "
                              "model (LLaVA, Qwen2-VL, PaliGemma, Idefics3, ...); a text model goes in --backbone"
                              ) from None
        raise ConfigError(f"cannot load {what} {name!r}{hint}: {' '.join(str(err).split())[:300]}") from None


def bad_weights(directory: Path) -> str:
    """The first ``*.safetensors`` file of ``directory`` whose header cannot be read (else the directory)."""
    for path in sorted(directory.glob("*.safetensors")) if directory.is_dir() else []:
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError):
            return str(path)
    return f"a weights file in {directory}"


def not_a_vlm(name: str) -> str | None:
    """What the model ``name`` is, when its config says it is no image-text-to-text model (else None)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError):
        return None
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return None
    architectures = ", ".join(getattr(config, "architectures", None) or []) or "no architecture named"
    return f"its config is model_type {config.model_type!r} ({architectures})"
