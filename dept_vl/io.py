"""Every file dept-vl writes or reads goes through here.

Writes are atomic (temp file beside the target, fsync, rename), so a reader sees the old file or the complete
new one, never a partial write; files get the mode ``open()`` would give them (the user's umask).
Readers check what they read and raise one clear error naming the file: ``CheckpointError`` for checkpoints,
runs and caches, ``InputError`` for data files, ``ConfigError`` for configs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, ConfigError, InputError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give; mkstemp's temp files are 0600
DIR_MODE = 0o777 & ~UMASK  # what mkdir() would give; mkdtemp's are 0700


# ---- writing ------------------------------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})}))


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_dir_atomically(final: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_dir)``, then put the complete directory at ``final`` (replacing an older one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, DIR_MODE)
    try:
        write(tmp)
        _fsync_tree(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---- checkpoints, runs and caches: CheckpointError ---------------------------------------------------------
def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent} (is this a dept-vl checkpoint directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                       expected: set[str] | None = None) -> None:
    """Load ``state`` into ``module``, naming the first key or shape that does not fit.

    ``expected``: the keys the checkpoint must hold (default: all of the module's state); other
    weights of the module (a frozen backbone) are left as they are.
    """
    own = module.state_dict()
    expected = set(own) if expected is None else expected
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected weight {key!r} for this model")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: weight {key!r} has shape {tuple(value.shape)}, "
                                  f"the model expects {tuple(own[key].shape)}")
    missing = sorted(k for k in expected if k not in state)
    if missing:
        raise CheckpointError(f"{source}: missing weight {missing[0]!r}")
    module.load_state_dict(state, strict=expected == set(own))


# ---- configs: ConfigError -------------------------------------------------------------------------------------
def read_config(path: str | Path, what: str = "config file") -> Any:
    """A ``.json`` file, or YAML for any other suffix, parsed; missing or unparsable: ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse {path}: {err}") from None


# ---- data files: InputError ---------------------------------------------------------------------------------
def read_data_json(path: str | Path) -> Any:
    """Parse a JSON data file; a missing or malformed file raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing data file {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None


def iter_jsonl(path: str | Path, skip_bad_lines: bool = False, log=None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; a malformed line raises InputError naming it, or is skipped and counted."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing data file {path}")
    bad = 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise json.JSONDecodeError("expected a JSON object", line, 0)
            except json.JSONDecodeError as err:
                if not skip_bad_lines:
                    raise InputError(f"{path}, line {number}: malformed JSON ({err.msg}); "
                                     "pass --skip-bad-lines to skip such lines") from None
                bad += 1
                continue
            yield number, record
    if bad and log is not None:
        log(f"{path}: skipped {bad} malformed line(s)")
