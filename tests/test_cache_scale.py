"""The feature cache at scale: reads that keep nothing resident, writers that share a cache without colliding,
claims of dead writers taken over, corrupt rows refused on the read path."""

import json
import multiprocessing
import os
import random
import subprocess
import time

import numpy as np
import pytest
import torch

from dept_vl.data.cache_claims import Claims, chunk_key
from dept_vl.data.feature_cache import FeatureCache
from dept_vl.data.shard_files import read_layout
from dept_vl.errors import CheckpointError
from dept_vl.io import tensor_checksum

SIGNATURE = {"encoder": "synthetic", "weights": "random", "image_size": 8, "pool_tokens": None, "num_tokens": 32,
             "feature_dim": 256}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fill(root, shards: int, rows: int, fmt: str = "safetensors", dtype: str = "float32") -> FeatureCache:
    cache = FeatureCache(root, SIGNATURE, fmt=fmt, dtype=dtype)
    for s in range(shards):
        ids = [f"im{s:03d}-{r:03d}" for r in range(rows)]
        cache.add_shard(ids, torch.arange(rows, dtype=torch.float32).view(rows, 1, 1).expand(rows, 32, 256) + s * 1000)
    return cache


def test_reading_every_shard_keeps_none_of_them_resident(tmp_path):
    _fill(tmp_path, shards=32, rows=64)  # 32 shards x 2 MiB (float32): 64 MiB of features
    cache = FeatureCache(tmp_path, SIGNATURE, max_open=4)
    ids = cache.ids()
    random.Random(0).shuffle(ids)
    cache.get(ids[:64])  # allocator and page-table warm-up at the batch size
    before = _rss_mb()
    for start in range(0, len(ids), 64):  # every row of every shard, in shuffled batches
        batch = ids[start : start + 64]
        feats = cache.get(batch)
        assert feats[0, 5, 7].item() == int(batch[0][2:5]) * 1000 + int(batch[0][6:])
    grown = _rss_mb() - before
    assert grown < 12, f"the process kept {grown:.0f} MiB after reading a 64 MiB cache"
    assert cache.open_files <= 4


@pytest.mark.parametrize("fmt,dtype", [("safetensors", "bfloat16"), ("numpy", "float16")])
def test_rows_read_equal_what_was_written(tmp_path, fmt, dtype):
    features = torch.randn(5, 3, 4)
    cache = FeatureCache(tmp_path, dict(SIGNATURE, num_tokens=3, feature_dim=4), fmt=fmt, dtype=dtype)
    cache.add_shard([f"r{i}" for i in range(5)], features)
    got = FeatureCache(tmp_path, None).get(["r3", "r0", "r3"])
    stored = features.to(getattr(torch, dtype)).float()
    assert got.dtype == torch.float32 and torch.equal(got, stored[[3, 0, 3]])


def test_a_changed_row_is_refused_when_read_and_the_others_still_read(tmp_path):
    _fill(tmp_path, shards=2, rows=8)
    shard = FeatureCache(tmp_path, None).shards()[1]
    layout = read_layout(shard)
    raw = bytearray(shard.read_bytes())
    raw[layout.offset + 3 * layout.row_bytes + 40] ^= 0x10  # one bit of row 3
    shard.write_bytes(bytes(raw))
    cache = FeatureCache(tmp_path, None)  # the index opens: only reads check rows
    with pytest.raises(CheckpointError, match=rf"{shard.name} fails its checksum \(row 3\).*dept-vl features"):
        cache.get(["im001-003"])
    assert cache.get(["im001-002", "im000-003"]).shape == (2, 32, 256)


def test_a_shard_without_row_checksums_is_verified_whole_once(tmp_path):
    from safetensors.torch import save_file

    FeatureCache(tmp_path, SIGNATURE)
    features = torch.ones(4, 32, 256)
    checksum = tensor_checksum({"features": features})
    features[2, 0, 0] = 2.0  # changed after its checksum was taken
    save_file({"features": features}, tmp_path / "shard-00000.safetensors",
              metadata={"ids": json.dumps(list("abcd")), "dept_vl_sha256": checksum})  # as dept-vl 0.1 wrote it
    with pytest.raises(CheckpointError, match="shard-00000.safetensors fails its checksum: it changed"):
        FeatureCache(tmp_path, None).get(["a"])  # row a is intact: the shard as a whole is not


def _slow_writer(root, images, barrier, results):
    from test_feature_cache import CountingEncoder

    class Slow(CountingEncoder):
        def forward(self, pixels):
            time.sleep(0.05)
            return super().forward(pixels)

    encoder = Slow()
    barrier.wait()
    cache = FeatureCache(root, encoder.identity())
    results.put(cache.build(images, encoder, batch_size=2, shard_size=4, progress=False, poll=0.05))


def test_two_writers_at_once_share_the_work_and_never_collide(tmp_path):
    images = {f"img{i:02d}": i for i in range(40)}
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    writers = [ctx.Process(target=_slow_writer, args=(tmp_path, images, barrier, results)) for _ in range(2)]
    for w in writers:
        w.start()
    encoded = sorted(results.get(timeout=120) for _ in writers)
    for w in writers:
        w.join(timeout=60)
    assert sum(encoded) == 40 and encoded[0] > 0, encoded  # every image encoded once, by both writers together
    ids = [i for shard in FeatureCache(tmp_path, None).shards() for i in read_layout(shard).ids]
    assert sorted(ids) == sorted(images)  # no image in two shards, none lost
    assert len({shard.name.split("-")[1] for shard in tmp_path.glob("shard-*")}) == 2  # each writer its names
    cache = FeatureCache(tmp_path, None)
    assert torch.equal(cache.get(sorted(images))[:, 0, 0], torch.arange(40.0))
    assert not list((tmp_path / "claims").iterdir())


def test_claims_of_live_writers_are_respected_and_those_of_dead_ones_taken_over(tmp_path):
    claims = Claims(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    key_live, key_dead = chunk_key(["a"]), chunk_key(["b"])
    (tmp_path / "claims").mkdir()
    for key, pid in ((key_live, os.getppid()), (key_dead, dead.pid)):
        (tmp_path / "claims" / f"{key}.claim").write_text(json.dumps({**claims.owner, "pid": pid}))
    assert claims.claim(key_live) is None
    claim = claims.claim(key_dead)
    assert claim is not None and json.loads(claim.path.read_text())["pid"] == os.getpid()
    claim.release()
    assert not claim.path.exists()


def test_index_is_all_a_reader_holds(tmp_path):
    cache = _fill(tmp_path, shards=3, rows=10, fmt="numpy")
    reopened = FeatureCache(tmp_path, None)
    assert len(reopened) == 30 and reopened.open_files == 0
    assert all(layout.ids is None for layout in reopened._layouts)  # the ids live in the index only
    assert np.array_equal(reopened.get(["im002-009"])[0, :, 0].numpy(), np.full(32, 2009.0))
    assert cache.missing(["im002-009", "x"]) == ["x"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_non_finite_values_are_found_from_their_bits(dtype):
    from dept_vl.data.shard_files import all_finite

    values = torch.tensor([[0.0, -1.5, 6e4 if dtype == torch.float16 else 3e38]], dtype=dtype)
    raw = lambda t: t.view(torch.uint16).numpy() if dtype == torch.bfloat16 else t.numpy()  # noqa: E731
    assert all_finite(raw(values), dtype)
    for bad in (float("nan"), float("inf"), float("-inf")):
        changed = values.clone()
        changed[0, 1] = bad
        assert not all_finite(raw(changed), dtype)


def test_the_data_scale_worker_trains_through_the_cache_and_reports_memory(tmp_path, monkeypatch):
    """The bench's training process, run in this process on a small generated cache (the bench runs it fresh)."""
    import argparse

    from dept_vl.bench.data_scale import make_cache
    from dept_vl.bench.data_worker import run
    from dept_vl.bench.speed import BenchConfig, build_backbone

    monkeypatch.setattr("dept_vl.bench.data_worker.steady_rss", lambda: True)  # leave this process's malloc alone
    cache = make_cache(tmp_path / "cache", 300, tokens=4, dim=16, shard_size=64)
    assert len(cache) == 300 and len(cache.shards()) == 5
    assert make_cache(tmp_path / "cache", 300, tokens=4, dim=16).shards() == cache.shards()  # reused as it is
    tiny = build_backbone(BenchConfig(backbone="tiny"), tmp_path / "tiny")
    args = argparse.Namespace(cache=str(cache.root), backbone=tiny, steps=3, batch_size=8, mode="train")
    report = run(args)
    assert report["steps"] == 3 and report["images"] == 300 and report["peak_rss_mb"] >= report["peak_pss_mb"] > 0
    assert 0 < report["start_pss_mb"] <= report["peak_pss_mb"]
    assert report["open_shard_files"] <= 5
    rates = run(argparse.Namespace(**{**vars(args), "mode": "rates"}))
    assert rates["data_batches_per_s"] > 0 and rates["data_over_step"] == pytest.approx(
        rates["data_batches_per_s"] / rates["train_steps_per_s"])


def test_the_index_scale_worker_times_the_index_and_the_task(tmp_path, monkeypatch):
    """``dept-vl bench --index-scale``'s process, run here on a small generated cache and task."""
    import argparse

    monkeypatch.setattr("dept_vl.bench.data_worker.steady_rss", lambda: True)  # leave this process's malloc alone
    from dept_vl.bench.data_scale import format_index_scale, make_cache, make_vqav2
    from dept_vl.bench.data_worker import load_at_scale

    cache = make_cache(tmp_path / "cache", 3000, tokens=1, dim=8, shard_size=512)
    vqa = make_vqav2(tmp_path / "vqa", {"train2014": 600, "val2014": 300})
    report = load_at_scale(argparse.Namespace(cache=str(cache.root), vqa=str(vqa)))
    assert report["index"]["items"] == 3000 and report["task"]["items"] == 900
    assert all(report[k]["seconds"] > 0 and report[k]["peak_mb"] >= 0 for k in ("index", "task"))
    table = format_index_scale({**report, "json_mb": 0.5})
    assert "| feature-cache index | 3,000 |" in table and "| VQAv2 questions (0 MB of JSON) | 900 |" in table
