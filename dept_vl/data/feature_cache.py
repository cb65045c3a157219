"""The visual feature cache: frozen-encoder outputs computed once, stored in shards, keyed by image id.

Layout of a cache directory::

    cache_config.json                  the encoder's name and settings (checked on every open)
    shard-<writer>-00000.safetensors   "features" (N, tokens, dim); the N image ids and a CRC-32 per row in the
    shard-<writer>-00001.safetensors   file's metadata (or shard-*.npz with arrays "features", "ids", "row_crc32")
    claims/                            the chunks writers are encoding now (``cache_claims``)

Every shard is written atomically (temp file + fsync + rename), so a shard on disk is always complete; an
interrupted build loses at most the shards in progress, and ``build`` resumes by skipping cached ids. Writers
(``accelerate launch`` processes, or separate commands) share the work through claims and name their shards
apart, so they never collide.

Reading keeps only the index (image id -> shard, row) in memory: ``get`` reads the rows it is asked for from the
shard files (``shard_files.ShardFile``), through the page cache that every process on the machine shares, with at
most ``max_open`` shard files open. Memory does not grow with the cache.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, InputError, OutputError
from ..io import cache_root, read_json, write_json
from ..progress import progress as progress_bar
from .cache_claims import STALE_AFTER, Claims, chunk_key
from .shard_files import (ShardError, ShardFile, ShardLayout, all_finite, as_tensor, non_finite, read_layout,
                          write_shard)

CACHE_CONFIG = "cache_config.json"
FORMATS = {"safetensors": ".safetensors", "numpy": ".npz"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


REBUILD = "delete it and rerun `dept-vl features` (or the training) to recompute it"


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
    """Read and extend one cache directory. ``signature`` must match the one the cache was made with.
    ``max_open``: shard files held open at once (reads never keep features in memory)."""

    def __init__(self, root: str | Path, signature: Mapping[str, Any] | None = None, fmt: str = "safetensors",
                 dtype: str = "float32", max_open: int = 128):
        self.root = Path(root)
        self.config = self._open_config(signature, fmt, dtype)
        self.suffix = FORMATS[self.config["format"]]
        self.max_open, self.writer, self._written = max(1, max_open), secrets.token_hex(4), 0
        self._index: dict[str, int] = {}  # image id -> shard number << 32 | row
        self._layouts: list[ShardLayout] = []
        self._names: set[str] = set()
        self._open: OrderedDict[int, ShardFile] = OrderedDict()
        self._verified: set[int] = set()  # shards without row checksums, verified whole by this process
        self._lock = threading.RLock()
        self.refresh()

    def _open_config(self, signature, fmt: str, dtype: str) -> dict:
        config_path = self.root / CACHE_CONFIG
        if config_path.is_file():
            config = read_json(config_path)
            if signature is not None and config.get("signature") != dict(signature):
                raise CheckpointError(_mismatch(self.root, config.get("signature"), dict(signature)))
            return config
        if signature is None:
            raise CheckpointError(f"{self.root} is not a feature cache (no {CACHE_CONFIG}); "
                                  "build one with `dept-vl features`")
        if fmt not in FORMATS:
            raise ConfigError(f"unknown cache format {fmt!r}; choose from {', '.join(FORMATS)}")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown cache dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        config = {"signature": dict(signature), "format": fmt, "dtype": dtype}
        try:
            write_json(config_path, config)  # atomic: writers starting together all write the same file
        except OSError as err:
            raise _unwritable(self.root, err) from None
        return config

    # ---- the index ---------------------------------------------------------------------------------------
    def shards(self) -> list[Path]:
        return sorted(self.root.glob(f"shard-*{self.suffix}"))

    def refresh(self) -> int:
        """Index the shards written since the last look (by this or another writer); return how many."""
        new = [path for path in self.shards() if path.name not in self._names]
        for path in new:
            self._add_to_index(path)
        return len(new)

    def _add_to_index(self, path: Path) -> None:
        try:
            layout = read_layout(path)
        except ShardError as err:
            raise ShardError(f"{err}; {REBUILD}") from None
        number = len(self._layouts)
        self._layouts.append(layout)
        self._names.add(path.name)
        for row, image_id in enumerate(layout.ids):
            self._index[image_id] = number << 32 | row
        layout.ids = None  # the index holds them

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        return list(self._index)

    @property
    def num_tokens(self) -> int:
        return int(self.config["signature"]["num_tokens"])

    @property
    def feature_dim(self) -> int:
        return int(self.config["signature"]["feature_dim"])

    def missing(self, image_ids: Sequence[str]) -> list[str]:
        return [i for i in image_ids if i not in self._index]

    # ---- reading -----------------------------------------------------------------------------------------
    def get(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Features of ``image_ids`` stacked as (len(ids), tokens, dim), in float32: each row read from its shard
        file into one array, checked (row checksum, then NaN / inf over the batch)."""
        codes = [self._code(image_id) for image_id in image_ids]
        if not codes:
            return torch.empty(0, self.num_tokens, self.feature_dim)
        first = self._layouts[codes[0] >> 32]
        batch = np.empty((len(codes), *first.shape[1:]), dtype=first.dtype)
        rows = batch.reshape(len(codes), -1).view(np.uint8)
        by_shard: dict[int, list[int]] = {}
        for k, code in enumerate(codes):
            by_shard.setdefault(code >> 32, []).append(k)
        with self._lock:  # no other thread closes a file this batch reads
            for number, positions in by_shard.items():
                shard = self._shard_file(number)
                if shard.layout.shape[1:] != first.shape[1:] or shard.layout.dtype != first.dtype:
                    raise CheckpointError(f"feature cache {self.root} holds shards of different shapes or dtypes "
                                          f"({first.path.name}, {shard.layout.path.name}); {REBUILD}")
                for k in positions:
                    shard.read_row(codes[k] & 0xFFFFFFFF, rows[k])
        if not all_finite(batch, first.torch_dtype):  # name the shard of the first bad row
            bad = next(k for k in range(len(codes)) if not all_finite(batch[k], first.torch_dtype))
            raise non_finite(self._layouts[codes[bad] >> 32].path, REBUILD)
        return as_tensor(batch, first.torch_dtype).float()

    def _code(self, image_id: str) -> int:
        code = self._index.get(image_id)
        if code is None:
            raise InputError(f"image {image_id!r} is not in the feature cache {self.root}; "
                             "run `dept-vl features` for this split")
        return code

    def _shard_file(self, number: int) -> ShardFile:
        """Shard ``number`` open for reading; the least recently used is closed past ``max_open``."""
        with self._lock:
            if number in self._open:
                self._open.move_to_end(number)
                return self._open[number]
            layout = self._layouts[number]
            try:
                shard = ShardFile(layout, REBUILD, verify=number not in self._verified)
            except FileNotFoundError:
                raise CheckpointError(f"feature cache shard {layout.path} was deleted while in use; {REBUILD}") \
                    from None
            self._verified.add(number)
            self._open[number] = shard
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)[1].close()
            return shard

    @property
    def open_files(self) -> int:
        return len(self._open)

    def close(self) -> None:
        with self._lock:
            for shard in self._open.values():
                shard.close()
            self._open.clear()

    # ---- writing -----------------------------------------------------------------------------------------
    def add_shard(self, image_ids: Sequence[str], features: torch.Tensor) -> Path:
        """Write one complete shard atomically, under a name no other writer uses, and index it."""
        if len(image_ids) != features.shape[0]:
            raise ValueError(f"{len(image_ids)} ids for {features.shape[0]} feature rows")
        path = self.root / f"shard-{self.writer}-{self._written:05d}{self.suffix}"
        features = features.detach().to("cpu", DTYPES[self.config["dtype"]]).contiguous()
        try:
            write_shard(path, features, image_ids)
        except OSError as err:
            raise _unwritable(self.root, err) from None
        self._written += 1
        self._add_to_index(path)
        return path

    @torch.no_grad()
    def build(self, images: Mapping[str, Any], encoder: Callable, batch_size: int = 64, shard_size: int = 1024,
              progress: bool = True, after_shard: Callable[[Path], None] | None = None, poll: float = 0.5) -> int:
        """Encode every image of ``images`` (id -> path or PIL image) not cached yet; return how many this writer
        encoded. ``encoder`` is a VisionEncoder (``preprocess`` + call).

        The sorted ids are cut into chunks of ``shard_size``; each chunk is claimed, encoded and written by one
        writer (``cache_claims``), so processes building one cache at once share the work; chunks other writers
        hold are waited for, so on return every image is cached. Resumable: cached ids are skipped."""
        remove_stale_temp_files(self.root)
        ordered = sorted(images)
        chunks = [ordered[s : s + shard_size] for s in range(0, len(ordered), shard_size)]
        uncached = [len(self.missing(c)) for c in chunks]
        todo = [c for c, n in zip(chunks, uncached) if n]
        bar = progress_bar(total=len(images), initial=len(images) - sum(uncached), desc="image features", unit="img",
                           disable=not progress)
        claims, encoded = Claims(self.root), 0
        while todo:
            held_by_others = []
            for chunk in todo:
                before = len(self.missing(chunk))
                done = self._build_chunk(chunk, images, encoder, batch_size, claims, bar, after_shard)
                if done is None:
                    held_by_others.append(chunk)
                    continue
                encoded += done
                bar.update(before - done)  # what another writer cached meanwhile
            if held_by_others:
                time.sleep(poll)
                self.refresh()
            todo = [chunk for chunk in held_by_others if self.missing(chunk)]
        bar.close()
        return encoded

    def _build_chunk(self, chunk, images, encoder, batch_size, claims: Claims, bar, after_shard) -> int | None:
        """Encode the uncached images of ``chunk`` under its claim: how many, or None if another writer holds it."""
        claim = claims.claim(chunk_key(chunk))
        if claim is None:
            return None
        try:
            self.refresh()  # the claim's last holder may have just cached it
            ids = self.missing(chunk)
            if not ids:
                return 0
            device = next((b.device for b in encoder.buffers()), torch.device("cpu"))
            parts = []
            for b in range(0, len(ids), batch_size):
                batch = ids[b : b + batch_size]
                parts.append(encoder(encoder.preprocess([images[i] for i in batch]).to(device)).cpu())
                bar.update(len(batch))
                claim.touch()
            path = self.add_shard(ids, torch.cat(parts))
        finally:
            claim.release()
        if after_shard is not None:
            after_shard(path)
        return len(ids)


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


def remove_stale_temp_files(root: str | Path, older_than: float = STALE_AFTER) -> int:
    """Delete temp files a killed write left behind (never read: shards are found only by their final names):
    those not written to for ``older_than`` seconds, so that another writer's shard in progress is left alone."""
    count, now = 0, time.time()
    for tmp in Path(root).glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                count += 1
        except FileNotFoundError:  # finished (renamed) or removed meanwhile
            pass
    return count
