"""The feature cache: round trip, refusal of another encoder's cache, resume after an interruption."""

import os
import time

import pytest
import torch

from dept_vl.errors import CheckpointError, InputError
from dept_vl.data.feature_cache import FeatureCache, cached_features, default_cache_dir, encoder_signature
from dept_vl.data.shard_files import row_crcs
from dept_vl.io import tensor_checksum
from dept_vl.models import build_vision_encoder

from conftest import write_image


class CountingEncoder(torch.nn.Module):
    """A stand-in encoder: features = mean pixel value per channel, repeated; counts the images it saw."""

    image_size, pool_tokens, out_dim = 8, None, 3

    def __init__(self):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.seen = 0

    def num_tokens(self):
        return 2

    def identity(self):
        return {"encoder": "counting", "weights": "pretrained", "image_size": self.image_size,
                "pool_tokens": self.pool_tokens, "num_tokens": 2, "feature_dim": self.out_dim}

    def preprocess(self, images):
        return torch.stack([torch.full((3, 8, 8), float(i)) for i in images])

    def forward(self, pixels):
        self.seen += pixels.shape[0]
        return pixels.mean(dim=(2, 3)).unsqueeze(1).repeat(1, 2, 1)


IMAGES = {f"img{i:02d}": i for i in range(10)}  # id -> "image" (the encoder above turns i into value i)


@pytest.mark.parametrize("fmt", ["safetensors", "numpy"])
def test_round_trip(tmp_path, fmt):
    encoder = CountingEncoder()
    sig = encoder_signature(encoder)
    cache = FeatureCache(tmp_path, sig, fmt=fmt)
    assert cache.build(IMAGES, encoder, batch_size=3, shard_size=4, progress=False) == 10
    assert len(cache.shards()) == 3
    reopened = FeatureCache(tmp_path, sig)
    feats = reopened.get(["img07", "img02"])
    assert feats.shape == (2, 2, 3) and feats[0, 1, 0].item() == 7.0 and feats[1, 0, 2].item() == 2.0
    assert reopened.missing(["img01", "zzz"]) == ["zzz"]
    with pytest.raises(InputError, match="'zzz' is not in the feature cache"):
        reopened.get(["zzz"])


def test_refuses_cache_from_another_encoder(tmp_path):
    encoder = CountingEncoder()
    FeatureCache(tmp_path, encoder_signature(encoder)).build(IMAGES, encoder, progress=False)
    other = dict(encoder_signature(encoder), image_size=16)
    with pytest.raises(CheckpointError, match="was made with .*'image_size': 8"):
        FeatureCache(tmp_path, other)
    with pytest.raises(CheckpointError, match="not a feature cache"):
        FeatureCache(tmp_path / "empty")


def test_resume_after_interruption_skips_finished_shards(tmp_path):
    encoder = CountingEncoder()
    sig = encoder_signature(encoder)

    def stop_after_first(path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FeatureCache(tmp_path, sig).build(IMAGES, encoder, shard_size=4, progress=False, after_shard=stop_after_first)
    killed = tmp_path / ".shard-00001.safetensors.abc.tmp"
    killed.write_bytes(b"partial")  # a write killed half way, 20 minutes ago
    os.utime(killed, (time.time() - 1200, time.time() - 1200))
    busy = tmp_path / ".shard-beef-00000.safetensors.xyz.tmp"
    busy.write_bytes(b"in progress")  # another writer's shard being written now: left alone
    assert len(FeatureCache(tmp_path, sig)) == 4
    encoder.seen = 0
    cache = FeatureCache(tmp_path, sig)
    assert cache.build(IMAGES, encoder, shard_size=4, progress=False) == 6 and encoder.seen == 6
    assert [p.name for p in tmp_path.glob(".*.tmp")] == [busy.name]
    assert not list((tmp_path / "claims").iterdir())  # every claim released
    assert torch.equal(cache.get(sorted(IMAGES))[:, 0, 0], torch.arange(10.0))


def test_truncated_shard_is_reported(tmp_path):
    encoder = CountingEncoder()
    sig = encoder_signature(encoder)
    FeatureCache(tmp_path, sig).build(IMAGES, encoder, shard_size=5, progress=False)
    shard = sorted(tmp_path.glob("shard-*"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{shard.name} is corrupt.*dept-vl features"):
        FeatureCache(tmp_path, sig)


def test_real_encoder_matches_direct_call(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "home"))
    images = {f"im{i}": str(write_image(tmp_path / f"{i}.png", i)) for i in range(3)}
    encoder = build_vision_encoder("efficientnet-lite0", image_size=32, pool_tokens=1)
    cache = cached_features("demo", images, encoder, progress=False)
    assert cache.root == default_cache_dir("demo", encoder_signature(encoder))
    assert str(cache.root).startswith(str(tmp_path / "home" / "features" / "demo"))
    direct = encoder(encoder.preprocess([images["im1"]]))
    assert torch.allclose(cache.get(["im1"]), direct, atol=1e-5)  # batched with 3 vs alone


@pytest.mark.parametrize("fmt", ["safetensors", "numpy"])
def test_changed_or_non_finite_shards_are_refused_by_name(tmp_path, fmt):
    encoder = CountingEncoder()
    sig = encoder_signature(encoder)
    FeatureCache(tmp_path, sig, fmt=fmt).build(IMAGES, encoder, shard_size=5, progress=False)
    shard = sorted(tmp_path.glob("shard-*"))[1]
    if fmt == "safetensors":
        raw = bytearray(shard.read_bytes())
        raw[-4:] = bytes(4)  # the last feature value zeroed; the header and the size unchanged
        shard.write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match=f"{shard.name} fails its checksum.*dept-vl features"):
            FeatureCache(tmp_path, sig).get(["img09"])
    else:
        import numpy as np

        with np.load(shard) as data:
            arrays = dict(data)
        arrays["features"][0, 0, 0] = np.nan
        arrays["dept_vl_sha256"] = np.array(tensor_checksum({"features": torch.from_numpy(arrays["features"])}))
        arrays["row_crc32"] = row_crcs(arrays["features"])
        np.savez(shard, **arrays)  # a matching checksum: only the NaN is wrong
        with pytest.raises(CheckpointError, match=f"{shard.name} holds NaN or inf values.*dept-vl features"):
            FeatureCache(tmp_path, sig).get(["img05"])
    assert FeatureCache(tmp_path, sig).get(["img00"]).shape == (1, 2, 3)  # the other shard is fine


def test_shards_without_a_checksum_are_still_read(tmp_path):
    from safetensors.torch import save_file

    sig = encoder_signature(CountingEncoder())
    FeatureCache(tmp_path, sig)  # writes cache_config.json
    save_file({"features": torch.ones(1, 2, 3)}, tmp_path / "shard-00000.safetensors", metadata={"ids": '["a"]'})
    assert torch.equal(FeatureCache(tmp_path, sig).get(["a"]), torch.ones(1, 2, 3))  # written by dept-vl 0.1
