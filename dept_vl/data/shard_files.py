"""One feature-cache shard on disk: written with a checksum per row, read a few rows at a time.

A shard holds ``features`` (N, tokens, dim) in row-major order, so each image's features are one contiguous run
of bytes. ``ShardFile`` finds where that run starts (the safetensors header, or the stored ``features.npy``
member of an ``.npz`` and its own header) and reads just the rows a batch needs with ``os.pread``: through the
page cache, which every process on the machine shares, never a copy of the whole shard in the process.

Every row read is checked: against the CRC-32 of its bytes written with it (``row_crc32``), and for NaN / inf.
A shard written before rows had checksums is verified whole against its SHA-256 once per process, streamed in
chunks, when it is first opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import CHECKSUM, atomic_write, tensor_checksum, tensor_header, write_safetensors

ROW_CRC = "row_crc32"
SAFETENSORS_DTYPES = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
                      "BF16": (np.uint16, torch.bfloat16)}  # numpy has no bfloat16: read its bits as uint16
VERIFY_CHUNK = 16 * 2**20


class ShardError(CheckpointError):
    """A shard that cannot be read as written; the message names it."""


def non_finite(path: Path, remedy: str) -> ShardError:
    return ShardError(f"{path} holds NaN or inf values (in features); {remedy}")


@dataclass
class ShardLayout:
    """Where a shard's feature rows lie and what protects them."""

    path: Path
    ids: list[str]
    offset: int  # byte offset of row 0
    shape: tuple[int, int, int]
    dtype: np.dtype  # as stored (uint16 for bfloat16)
    torch_dtype: torch.dtype
    row_crc: np.ndarray | None  # uint32 per row, or None (written by dept-vl < 0.2)
    checksum: str | None  # SHA-256 of the whole tensor (``tensor_checksum``), or None

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.shape[2] * self.dtype.itemsize


def row_crcs(features: np.ndarray) -> np.ndarray:
    """The CRC-32 of each row's bytes."""
    return np.array([zlib.crc32(row.tobytes()) for row in features], dtype=np.uint32)


def write_shard(path: Path, features: torch.Tensor, image_ids: Sequence[str]) -> None:
    """Write ``features`` (N, tokens, dim) for ``image_ids`` atomically, with the whole tensor's SHA-256 and a CRC-32
    per row. ``.npz`` shards store bfloat16 as float32 (numpy has no bfloat16)."""
    if path.suffix == ".npz":
        array = features.float().numpy() if features.dtype == torch.bfloat16 else features.numpy()
        checksum, crcs = tensor_checksum({"features": torch.from_numpy(array)}), row_crcs(array)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=array, ids=np.array(list(image_ids), dtype=str), **{ROW_CRC: crcs},
                         **{CHECKSUM: np.array(checksum)})

        atomic_write(path, write)
        return
    crcs = row_crcs(features.view(torch.uint16).numpy() if features.dtype == torch.bfloat16 else features.numpy())
    write_safetensors(path, {"features": features},
                      metadata={"ids": json.dumps(list(image_ids)), ROW_CRC: crcs.tobytes().hex()})


def read_layout(path: Path) -> ShardLayout:
    """The layout of a shard, checked against the file's size; a ShardError naming it if it cannot be read."""
    try:
        layout = _npz_layout(path) if path.suffix == ".npz" else _safetensors_layout(path)
        size = path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile) as err:
        raise ShardError(f"feature cache shard {path} is corrupt ({err})") from None
    n = layout.shape[0]
    if len(layout.ids) != n or (layout.row_crc is not None and len(layout.row_crc) != n):
        raise ShardError(f"feature cache shard {path} is corrupt ({len(layout.ids)} ids for {n} feature rows)")
    if layout.offset + n * layout.row_bytes > size:
        raise ShardError(f"feature cache shard {path} is corrupt (truncated: {size} bytes)")
    return layout


def _safetensors_layout(path: Path) -> ShardLayout:
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > 2**30:
            raise ValueError("header too large")
        header = json.loads(fh.read(length))
    meta = header.get("__metadata__") or {}
    entry = header["features"]
    if entry["dtype"] not in SAFETENSORS_DTYPES or len(entry["shape"]) != 3:
        raise ValueError(f"features of dtype {entry['dtype']} and shape {entry['shape']}")
    np_dtype, torch_dtype = SAFETENSORS_DTYPES[entry["dtype"]]
    crc = np.frombuffer(bytes.fromhex(meta[ROW_CRC]), dtype=np.uint32) if ROW_CRC in meta else None
    return ShardLayout(path, json.loads(meta["ids"]), 8 + length + int(entry["data_offsets"][0]),
                       tuple(entry["shape"]), np.dtype(np_dtype), torch_dtype, crc, meta.get(CHECKSUM))


def _npz_layout(path: Path) -> ShardLayout:
    with np.load(path, allow_pickle=False) as data:  # reads only the small members asked for
        ids = [str(i) for i in data["ids"]]
        crc = np.asarray(data[ROW_CRC], dtype=np.uint32) if ROW_CRC in data.files else None
        checksum = str(data[CHECKSUM]) if CHECKSUM in data.files else None
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("features.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError("compressed features (dept-vl writes them stored)")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the member's local header: its name and extra field come next
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if fortran or len(shape) != 3 or dtype.hasobject:
        raise ValueError(f"features of shape {shape} and dtype {dtype}")
    return ShardLayout(path, ids, offset, tuple(shape), dtype, torch.from_numpy(np.zeros(0, dtype)).dtype, crc,
                       checksum)


class ShardFile:
    """An open shard: ``read_row`` reads one row (checked) into a batch's array. A shard without
    row checksums is verified whole first, unless ``verify`` is False (this process verified it already)."""

    def __init__(self, layout: ShardLayout, remedy: str, verify: bool = True):
        self.layout, self.remedy = layout, remedy
        self.fd = os.open(layout.path, os.O_RDONLY)
        try:
            if layout.row_crc is None and verify:
                self._verify_whole()
        except BaseException:
            self.close()
            raise

    def read_row(self, row: int, into: np.ndarray) -> None:
        """Row ``row``'s bytes straight into ``into`` (a uint8 view of a batch's array: no copy), checked against
        its CRC-32 where the shard has them."""
        lay = self.layout
        if os.preadv(self.fd, [into], lay.offset + row * lay.row_bytes) != lay.row_bytes:
            raise ShardError(f"feature cache shard {lay.path} is corrupt (truncated); {self.remedy}")
        if lay.row_crc is not None and zlib.crc32(into) != int(lay.row_crc[row]):
            raise ShardError(f"{lay.path} fails its checksum (row {row}): it changed after it was written; "
                             f"{self.remedy}")

    def _check_finite(self, array: np.ndarray) -> None:
        if not all_finite(array, self.layout.torch_dtype):
            raise non_finite(self.layout.path, self.remedy)

    def _verify_whole(self) -> None:
        """A shard without row checksums: its SHA-256 (when it has one) and finiteness, streamed chunk by chunk."""
        lay = self.layout
        digest = hashlib.sha256(tensor_header("features", lay.torch_dtype, lay.shape))
        rows_per_chunk = max(1, VERIFY_CHUNK // lay.row_bytes)
        for start in range(0, lay.shape[0], rows_per_chunk):
            count = min(rows_per_chunk, lay.shape[0] - start)
            chunk = np.empty(count * lay.row_bytes // lay.dtype.itemsize, dtype=lay.dtype)
            if os.preadv(self.fd, [chunk], lay.offset + start * lay.row_bytes) != chunk.nbytes:
                raise ShardError(f"feature cache shard {lay.path} is corrupt (truncated); {self.remedy}")
            digest.update(chunk)
            self._check_finite(chunk)
        if lay.checksum is not None and digest.hexdigest() != lay.checksum:
            raise ShardError(f"{lay.path} fails its checksum: it changed after it was written; {self.remedy}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


EXPONENT_BITS = {torch.float16: (np.uint16, 0x7C00), torch.bfloat16: (np.uint16, 0x7F80),
                 torch.float32: (np.uint32, 0x7F800000), torch.float64: (np.uint64, 0x7FF0000000000000)}


def all_finite(array: np.ndarray, torch_dtype: torch.dtype) -> bool:
    """No NaN / inf in ``array`` (stored as ``torch_dtype``): a value is either when its exponent bits are all set,
    a test on the raw bits ten times faster than ``isfinite`` on float16."""
    if torch_dtype not in EXPONENT_BITS:
        return bool(as_tensor(array, torch_dtype).isfinite().all())
    kind, mask = EXPONENT_BITS[torch_dtype]
    return not bool(((array.view(kind) & kind(mask)) == kind(mask)).any())


def as_tensor(array: np.ndarray, torch_dtype: torch.dtype) -> torch.Tensor:
    """A batch read by ``ShardFile.read_row`` as a tensor of the stored dtype."""
    tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else tensor
