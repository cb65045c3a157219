"""The visual feature cache: frozen-encoder outputs computed once, stored in shards, keyed by image id.

Layout of a cache directory::

    cache_config.json             the encoder's name and settings (checked on every open)
    shard-00000.safetensors       "features" (N, tokens, dim); the N image ids in the file's metadata
    shard-00001.safetensors ...   (or shard-*.npz with arrays "features" and "ids" for format="numpy")

Every shard is written atomically (temp file + fsync + rename), so a shard on disk is always complete; an
interrupted build loses at most the shard in progress, and ``build`` resumes by skipping cached ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError, ConfigError, InputError, OutputError
from ..io import (CHECKSUM, atomic_write, cache_root, check_tensors, read_json, tensor_checksum, write_json,
                  write_safetensors)
from ..progress import progress as progress_bar

CACHE_CONFIG = "cache_config.json"
FORMATS = {"safetensors": ".safetensors", "numpy": ".npz"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


_UNREADABLE = (SafetensorError, OSError, ValueError, KeyError)


REBUILD = "delete it and rerun `dept-vl features` (or the training) to recompute it"


def _corrupt(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(f"feature cache shard {path} is corrupt ({err}); {REBUILD}")


def _mismatch(root: Path, made_with, wanted: dict) -> str:
    if isinstance(made_with, dict) and "weights" not in made_with:
        return (f"feature cache {root} was made by an older dept-vl that did not record whether the encoder's "
                "weights were the pretrained ones (features of a random and of a pretrained encoder could be mixed "
                "up); delete it to rebuild it, or use another --cache-dir")
    return f"feature cache {root} was made with {made_with}, not {wanted}; use another --cache-dir or delete it"


def _unwritable(root: Path, err: OSError) -> OutputError:
    return OutputError(f"cannot write the feature cache in {root} ({err.strerror or err}); set DEPT_VL_CACHE to a "
                       "writable directory, or pass --cache-dir")


def encoder_signature(encoder) -> dict[str, Any]:
    """What makes two caches interchangeable: the encoder's own account of itself (``VisionEncoder.identity``:
    its name, its weights, and every setting that changes its output)."""
    return dict(encoder.identity())


def default_cache_dir(task: str, signature: Mapping[str, Any]) -> Path:
    """``$DEPT_VL_CACHE`` (default ``~/.cache/dept-vl``) / features / <task> /
    <encoder>-<weights>-<size>px-<tokens>tok."""
    root = cache_root()
    encoder = "".join(c if c.isalnum() or c in "-_." else "_" for c in signature["encoder"])
    return (root / "features" / task /
            f"{encoder}-{signature['weights']}-{signature['image_size']}px-{signature['num_tokens']}tok")


class FeatureCache:
    """Read and extend one cache directory. ``signature`` must match the one the cache was made with."""

    def __init__(self, root: str | Path, signature: Mapping[str, Any] | None = None, fmt: str = "safetensors",
                 dtype: str = "float32"):
        self.root = Path(root)
        config_path = self.root / CACHE_CONFIG
        if config_path.is_file():
            self.config = read_json(config_path)
            if signature is not None and self.config.get("signature") != dict(signature):
                raise CheckpointError(_mismatch(self.root, self.config.get("signature"), dict(signature)))
        elif signature is None:
            raise CheckpointError(f"{self.root} is not a feature cache (no {CACHE_CONFIG}); "
                                  "build one with `dept-vl features`")
        else:
            if fmt not in FORMATS:
                raise ConfigError(f"unknown cache format {fmt!r}; choose from {', '.join(FORMATS)}")
            if dtype not in DTYPES:
                raise ConfigError(f"unknown cache dtype {dtype!r}; choose from {', '.join(DTYPES)}")
            self.config = {"signature": dict(signature), "format": fmt, "dtype": dtype}
            try:
                write_json(config_path, self.config)
            except OSError as err:
                raise _unwritable(self.root, err) from None
        self.suffix = FORMATS[self.config["format"]]
        self._index: dict[str, tuple[Path, int]] = {}
        self._loaded: dict[Path, torch.Tensor] = {}
        for shard in self.shards():
            for row, image_id in enumerate(self._read_ids(shard)):
                self._index[image_id] = (shard, row)

    # ---- reading -----------------------------------------------------------------------------------------
    def shards(self) -> list[Path]:
        return sorted(self.root.glob(f"shard-*{self.suffix}"))

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def num_tokens(self) -> int:
        return int(self.config["signature"]["num_tokens"])

    @property
    def feature_dim(self) -> int:
        return int(self.config["signature"]["feature_dim"])

    def missing(self, image_ids: Sequence[str]) -> list[str]:
        return [i for i in image_ids if i not in self._index]

    def get(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Features of ``image_ids`` stacked as (len(ids), tokens, dim), in float32."""
        rows = []
        for image_id in image_ids:
            if image_id not in self._index:
                raise InputError(f"image {image_id!r} is not in the feature cache {self.root}; "
                                 "run `dept-vl features` for this split")
            shard, row = self._index[image_id]
            rows.append(self._shard(shard)[row])
        return torch.stack(rows).float()

    def _shard(self, path: Path) -> torch.Tensor:
        """A shard's features, checked against the checksum written with them and for NaN / inf."""
        if path not in self._loaded:
            try:
                if self.suffix == ".npz":
                    with np.load(path, allow_pickle=False) as data:
                        features = torch.from_numpy(data["features"])
                        checksum = str(data[CHECKSUM]) if CHECKSUM in data.files else None
                else:
                    with safe_open(str(path), framework="pt") as fh:
                        features, checksum = fh.get_tensor("features"), (fh.metadata() or {}).get(CHECKSUM)
            except _UNREADABLE as err:
                raise _corrupt(path, err) from None
            check_tensors(path, {"features": features}, checksum, finite=True, remedy=REBUILD)
            self._loaded[path] = features
        return self._loaded[path]

    def _read_ids(self, path: Path) -> list[str]:
        try:
            if self.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    return [str(i) for i in data["ids"]]
            with safe_open(str(path), framework="pt") as fh:
                return json.loads(fh.metadata()["ids"])
        except _UNREADABLE as err:
            raise _corrupt(path, err) from None

    # ---- writing -----------------------------------------------------------------------------------------
    def add_shard(self, image_ids: Sequence[str], features: torch.Tensor) -> Path:
        """Write one complete shard atomically and index it."""
        if len(image_ids) != features.shape[0]:
            raise ValueError(f"{len(image_ids)} ids for {features.shape[0]} feature rows")
        existing = self.shards()
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        path = self.root / f"shard-{number:05d}{self.suffix}"
        features = features.detach().to("cpu", DTYPES[self.config["dtype"]]).contiguous()
        try:
            if self.suffix == ".npz":
                self._write_npz(path, features, image_ids)
            else:
                write_safetensors(path, {"features": features}, metadata={"ids": json.dumps(list(image_ids))})
        except OSError as err:
            raise _unwritable(self.root, err) from None
        self._loaded[path] = features
        for row, image_id in enumerate(image_ids):
            self._index[image_id] = (path, row)
        return path

    @staticmethod
    def _write_npz(path: Path, features: torch.Tensor, image_ids: Sequence[str]) -> None:
        array = features.float().numpy() if features.dtype == torch.bfloat16 else features.numpy()
        checksum = tensor_checksum({"features": torch.from_numpy(array)})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=array, ids=np.array(list(image_ids), dtype=str), **{CHECKSUM: np.array(checksum)})

        atomic_write(path, write)

    @torch.no_grad()
    def build(self, images: Mapping[str, Any], encoder: Callable, batch_size: int = 64, shard_size: int = 1024,
              progress: bool = True, after_shard: Callable[[Path], None] | None = None) -> int:
        """Encode every image of ``images`` (id -> path or PIL image) not cached yet; return how many were new.

        ``encoder`` is a VisionEncoder (``preprocess`` + call). Resumable: cached ids are skipped.
        """
        remove_stale_temp_files(self.root)
        todo = [i for i in sorted(images) if i not in self._index]
        bar = progress_bar(total=len(images), initial=len(images) - len(todo), desc="image features", unit="img",
                           disable=not progress)
        device = next((b.device for b in encoder.buffers()), torch.device("cpu"))
        for start in range(0, len(todo), shard_size):
            ids = todo[start : start + shard_size]
            chunks = []
            for b in range(0, len(ids), batch_size):
                batch = ids[b : b + batch_size]
                pixels = encoder.preprocess([images[i] for i in batch]).to(device)
                chunks.append(encoder(pixels).cpu())
                bar.update(len(batch))
            path = self.add_shard(ids, torch.cat(chunks))
            if after_shard is not None:
                after_shard(path)
        bar.close()
        return len(todo)


def open_feature_cache(task: str, encoder, cache_dir: str | Path | None = None, fmt: str = "safetensors",
                       dtype: str = "float32") -> FeatureCache:
    """THE way to open (or create) the cache of ``encoder``'s features for ``task``: ``cache_dir`` is the cache
    directory itself (``--cache-dir`` means the same for ``features``, ``train`` and ``eval``; tasks that share it
    share the features of images with the same id), default ``default_cache_dir(task, ...)``. A cache made with
    other encoder settings is refused. ``fmt`` / ``dtype`` apply to a new cache."""
    signature = encoder_signature(encoder)
    root = Path(cache_dir) if cache_dir else default_cache_dir(task, signature)
    return FeatureCache(root, signature, fmt=fmt, dtype=dtype)


def cached_features(task: str, images: Mapping[str, Any], encoder, cache_dir=None, **build_kwargs) -> FeatureCache:
    """Open (or create) the cache for ``encoder`` and make sure every image of ``images`` is in it."""
    cache = open_feature_cache(task, encoder, cache_dir)
    cache.build(images, encoder, **build_kwargs)
    return cache


def remove_stale_temp_files(root: str | Path) -> int:
    """Delete temp files a killed write left behind (never read: shards are found only by their final names).

    Only one process may build a cache at a time (under ``accelerate``, the main process).
    """
    count = 0
    for tmp in Path(root).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count
