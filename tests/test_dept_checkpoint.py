import io
import json
import math
import os
import pickle

import pytest
import torch
from torch import nn

from dept_vl import CheckpointError, DePT, DePTConfig
from dept_vl.io import write_json

from conftest import OFFICIAL_COLA, shared_asset


def random_dept():
    torch.manual_seed(1)
    dept = DePT(DePTConfig(prompt_length=6, r=3, max_length=20, lora_alpha=4), hidden_size=8)
    nn.init.normal_(dept.lora_embedding_B)
    return dept


def test_round_trip_gives_identical_outputs(tmp_path):
    dept = random_dept()
    dept.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = DePT.from_pretrained(tmp_path)
    assert loaded.config == dept.config
    x = torch.randn(2, 11, 8)
    assert torch.equal(loaded(x)[0], dept(x)[0])


def write_official_checkpoint(directory, l=6, r=3, s=20, d=8, lora_alpha=8, seed=0):
    """A checkpoint in the official ZhengxiangShi/DePT layout, its tensors pickled as if saved from CUDA (loading
    it without map_location="cpu" fails on a machine without a GPU); returns (P, A, B)."""
    g = torch.Generator().manual_seed(seed)
    P, A, B = torch.randn(l, d, generator=g), torch.randn(s, r, generator=g), torch.randn(r, d, generator=g)
    state = {"prompt_embeddings": P, "prompt_encoder.lora_embedding_A": A, "prompt_encoder.lora_embedding_B": B}
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    on_cuda = buffer.getvalue().replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert on_cuda != buffer.getvalue()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_model.bin").write_bytes(on_cuda)
    config = {"peft_type": "PROMPT_TUNING_LORA", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": l, "r": r,
              "lora_alpha": lora_alpha, "max_length": s, "token_dim": d}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return P, A, B


def official_output(P, A, B, x, scaling):
    """The official code's computation: pad the input to max_length, add the whole A @ B, prepend P."""
    batch, n, d = x.shape
    padded = torch.cat([x, torch.zeros(batch, A.shape[0] - n, d)], 1) + (A @ B) * scaling
    return torch.cat([P.expand(batch, -1, -1), padded], 1)[:, : P.shape[0] + n]


def test_official_layout_checkpoint_matches_official_formula(tmp_path):
    P, A, B = write_official_checkpoint(tmp_path, l=6, r=3, s=20, d=8, lora_alpha=8)
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really is CUDA-located
        torch.load(tmp_path / "adapter_model.bin", weights_only=True)
    dept = DePT.from_pretrained(tmp_path)
    assert (dept.config.prompt_length, dept.config.r, dept.config.max_length, dept.hidden_size) == (6, 3, 20, 8)
    assert dept.scaling == pytest.approx(8 / math.sqrt(3))
    x = torch.randn(2, 11, 8)
    out, out_mask = dept(x, torch.ones(2, 11, dtype=torch.long))
    torch.testing.assert_close(out, official_output(P, A, B, x, 8 / math.sqrt(3)))
    assert out_mask.shape == (2, 6 + 11)
    with pytest.raises(CheckpointError, match="hidden size 8, but the model's is 16"):
        DePT.from_pretrained(tmp_path, hidden_size=16)


def test_real_official_checkpoint_matches_official_formula():
    cola = shared_asset(OFFICIAL_COLA)
    dept = DePT.from_pretrained(cola)
    raw = torch.load(cola / "adapter_model.bin", map_location="cpu", weights_only=True)
    P, A, B = raw["prompt_embeddings"], raw["prompt_encoder.lora_embedding_A"], raw["prompt_encoder.lora_embedding_B"]
    assert (dept.config.prompt_length, dept.config.r, dept.config.max_length) == (80, 15, 256)
    assert dept.hidden_size == 768 and dept.scaling == pytest.approx(8 / math.sqrt(15))
    torch.manual_seed(0)
    x = torch.randn(2, 37, 768)
    out, out_mask = dept(x, torch.ones(2, 37, dtype=torch.long))
    torch.testing.assert_close(out, official_output(P, A, B, x, 8 / math.sqrt(15)))
    assert out_mask.shape == (2, 117)
    with pytest.raises(CheckpointError, match="hidden size 768, but the model's is 512"):
        DePT.from_pretrained(cola, hidden_size=512)


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING_LORA", "r": 2}))
    with open(tmp_path / "adapter_model.bin", "wb") as fh:
        pickle.dump({"prompt_embeddings": Evil()}, fh)
    with pytest.raises(CheckpointError, match="cannot read"):
        DePT.from_pretrained(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        DePT.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        DePT.from_pretrained(tmp_path)
    random_dept().save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        DePT.from_pretrained(tmp_path)
    write_json(tmp_path / "adapter_config.json", {"peft_type": "LORA"})
    with pytest.raises(CheckpointError, match="peft_type 'LORA'"):
        DePT.from_pretrained(tmp_path)


def test_shape_mismatch_names_the_weight(tmp_path):
    random_dept().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    write_json(tmp_path / "adapter_config.json", {**cfg, "max_length": 30})
    with pytest.raises(CheckpointError, match=r"lora_embedding_A' has shape \(20, 3\), the model expects \(30, 3\)"):
        DePT.from_pretrained(tmp_path)
