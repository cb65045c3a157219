"""Every file dept-vl writes or reads goes through here.

Writes are atomic (temp file beside the target, fsync, rename), so a reader sees the old file or the complete
new one, never a partial write; files get the mode ``open()`` would give them (the user's umask).
Readers check what they read and raise one clear error naming the file: ``CheckpointError`` for checkpoints,
runs and caches, ``InputError`` for data files, ``ConfigError`` for configs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, ConfigError, InputError, OutputError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give; mkstemp's temp files are 0600
DIR_MODE = 0o777 & ~UMASK  # what mkdir() would give; mkdtemp's are 0700


def cache_root() -> Path:
    """dept-vl's cache: ``$DEPT_VL_CACHE``, default ``~/.cache/dept-vl`` (features/, models/)."""
    return Path(os.environ.get("DEPT_VL_CACHE", Path.home() / ".cache" / "dept-vl"))


# ---- writing ------------------------------------------------------------------------------------------------
class DiskFullError(OutputError):
    """A write failed because its file system is full; nothing that was there before was touched."""

    def __init__(self, path: Path):
        self.message = f"no space left on {mount_point(path)} while writing {path}"
        super().__init__(f"{self.message}; free space and run the command again")
        self.path = path


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system ``path`` lies on."""
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _disk_full(err: BaseException, where: Path) -> bool:
    """Did a write into ``where`` fail for want of space? (ENOSPC, or a library's text for it, or a file system with
    nothing left while the failed write's temp file still holds its share.)"""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space left" in str(err):
        return True
    try:
        return isinstance(err, Exception) and shutil.disk_usage(where).free < 64 * 1024
    except OSError:
        return False


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, fsync it, then rename it over ``path``. A full disk
    is a DiskFullError naming the file and its file system."""
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
    except BaseException as err:
        full = _disk_full(err, path.parent)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if full:
            raise DiskFullError(path) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """The tensors and ``metadata``, plus their checksum (``read_safetensors`` verifies it)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"format": "pt", **(metadata or {}), CHECKSUM: tensor_checksum(tensors)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


CHECKSUM = "dept_vl_sha256"


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes: what was written is what is read."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().contiguous().cpu()
        digest.update(tensor_header(key, tensor.dtype, tensor.shape))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def tensor_header(key: str, dtype: torch.dtype, shape) -> bytes:
    """What ``tensor_checksum`` hashes before a tensor's bytes (for checking one tensor streamed, chunk by chunk)."""
    return f"{key}|{dtype}|{tuple(shape)}|".encode()


def check_tensors(path: Path, tensors: dict[str, torch.Tensor], checksum: str | None, finite: bool,
                  remedy: str) -> None:
    """CheckpointError naming ``path`` and ``remedy`` if the tensors fail their checksum (when one was stored), or,
    with ``finite``, hold NaN or inf."""
    if checksum is not None and tensor_checksum(tensors) != checksum:
        raise CheckpointError(f"{path} fails its checksum: it changed after it was written; {remedy}")
    for key, tensor in tensors.items() if finite else ():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path} holds NaN or inf values (in {key}); {remedy}")


def _settle_tree(directory: Path) -> None:
    """Every file under ``directory`` synced to disk, with the mode ``open()`` / ``mkdir()`` would have given it
    (libraries that write through temp files leave 0600 behind)."""
    for path in directory.rglob("*"):
        if path.is_file():
            os.chmod(path, FILE_MODE)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            os.chmod(path, DIR_MODE)
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
        _settle_tree(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as err:
        full = isinstance(err, DiskFullError) or _disk_full(err, final.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise DiskFullError(getattr(err, "path", final)) from None
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created, holding this process's pid) while the block runs.
    Another process asking for it gets an OutputError at once, naming ``what`` and the holder. The system drops
    the lock when its holder dies, so the lock of a killed process is simply taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise OutputError(f"{what} is in use by another dept-vl process{f' (pid {holder})' if holder else ''}; "
                              "wait for it to end, or use another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it could let two processes lock two files)


def links_out(directory: Path, root: Path) -> Path | None:
    """The first symlink under ``directory`` whose target is outside ``root`` (resolved); None when none is."""
    for folder, dirs, files in os.walk(directory):  # symlinked folders are listed, not entered
        for path in (Path(folder) / name for name in dirs + files):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                return path
    return None


# ---- checkpoints, runs and caches: CheckpointError ---------------------------------------------------------
MAX_JSON_DEPTH = 100  # arrays / objects nested deeper than this are refused (a hostile body is not parsed)


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` with a depth limit: a ValueError (as for any malformed JSON) for arrays / objects nested deeper
    than ``MAX_JSON_DEPTH``, found before the parser could recurse into them (a scan at C speed: strings removed by a
    regular expression, the nesting depth a cumulative sum)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:  # else nothing can be nested that deep
        structure = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
        steps = np.isin(structure, _OPEN).astype(np.int32) - np.isin(structure, _CLOSE).astype(np.int32)
        if steps.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN, _CLOSE = np.frombuffer(b"[{", dtype=np.uint8), np.frombuffer(b"]}", dtype=np.uint8)


HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def local_or_hub(name: str | Path, what: str = "checkpoint") -> Path:
    """A local path as it is; a Hugging Face Hub repository (``user/repo``) that is not a local path, through
    ``huggingface_hub``: from its cache, or downloaded unless ``HF_HUB_OFFLINE=1``; a CheckpointError saying which
    when it can be had neither way."""
    path = Path(name)
    if path.exists() or not HUB_NAME.fullmatch(str(name)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(name)))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{what} {name} is not a directory here, and the Hugging Face Hub repository {name} is "
                              "not in the local cache (offline: HF_HUB_OFFLINE=1, or the Hub cannot be reached); "
                              "download it once with the network, or give a directory") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{what} {name}: no such directory, and no such repository on the Hugging Face Hub "
                              "(or it is private: log in with `hf auth login`)") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot fetch {what} {name} from the Hugging Face Hub: "
                              f"{' '.join(str(err).split())[:200]}") from None


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent} (is this a dept-vl checkpoint directory?)")
    try:
        return parse_json(path.read_bytes())
    except ValueError as err:  # malformed JSON, or bytes that are no Unicode text
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def read_safetensors(path: str | Path, finite: bool = False, remedy: str = "replace it with a good copy"
                     ) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the checksum written with them (files without one are
    read as they are) and, with ``finite``, for NaN / inf; errors name the file and ``remedy``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent}")
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as fh:
            checksum = (fh.metadata() or {}).get(CHECKSUM)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None
    check_tensors(path, tensors, checksum, finite, remedy)
    return tensors


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
        text = path.read_text(encoding="utf-8-sig")
        return parse_json(text) if path.suffix == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse {path}: {err}") from None


# ---- data files: InputError ---------------------------------------------------------------------------------
def read_data_json(path: str | Path) -> Any:
    """Parse a JSON data file; a missing or malformed file raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing data file {path}")
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a byte-order mark is allowed
            return json.loads(fh.read())  # a local file: no depth scan, which would double a 500 MB file's load
    except RecursionError:  # the parser's own guard against deep nesting
        raise InputError(f"{path}: JSON nested too deeply to read") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except ValueError as err:  # nested too deeply
        raise InputError(f"{path}: {err}") from None


def iter_jsonl(path: str | Path, skip_bad_lines: bool = False, log=None, skipped: list | None = None
               ) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object line; a line that is not UTF-8 text or not a JSON object
    raises InputError naming the file and line, or with ``skip_bad_lines`` is skipped: ``log`` names the first ten
    skipped and then counts them all (or, given the list ``skipped``, the caller does: each skipped line's number is
    appended to it)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing data file {path}")
    bad = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                if not line.strip():
                    continue
                record = parse_json(line)
                if not isinstance(record, dict):
                    raise json.JSONDecodeError("expected a JSON object", line, 0)
            except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both are
                if not skip_bad_lines:
                    raise InputError(f"{path}, line {number}: {bad_line_reason(err)}; pass --skip-bad-lines to skip "
                                     "such lines") from None
                bad += 1
                if skipped is not None:
                    skipped.append(number)
                if log is not None and (len(skipped) if skipped is not None else bad) <= 10:
                    log(f"skipped {path}, line {number}: {bad_line_reason(err)}")
                continue
            yield number, record
    if bad and log is not None and skipped is None:
        log(f"{path}: skipped {bad} malformed line(s)")


def bad_line_reason(err: ValueError) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text ({err.reason} at byte {err.start})"
    return f"malformed JSON ({getattr(err, 'msg', err)})"
