import json
import math
import os
import pickle

import pytest
import torch
from torch import nn

from dept_vl import CheckpointError, DePT, DePTConfig
from dept_vl.checkpoint import atomic_write, write_json

from conftest import OFFICIAL_COLA


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


def test_official_checkpoint_matches_official_formula():
    dept = DePT.from_pretrained(OFFICIAL_COLA)
    raw = torch.load(OFFICIAL_COLA / "adapter_model.bin", map_location="cpu", weights_only=True)
    P, A, B = raw["prompt_embeddings"], raw["prompt_encoder.lora_embedding_A"], raw["prompt_encoder.lora_embedding_B"]
    assert (dept.config.prompt_length, dept.config.r, dept.config.max_length) == (80, 15, 256)
    assert dept.hidden_size == 768 and dept.scaling == pytest.approx(8 / math.sqrt(15))
    torch.manual_seed(0)
    x = torch.randn(2, 37, 768)
    mask = torch.ones(2, 37, dtype=torch.long)
    out, out_mask = dept(x, mask)
    # the official code pads to max_length and adds the full A @ B, then prepends the prompt
    padded = torch.cat([x, torch.zeros(2, 256 - 37, 768)], 1) + (A @ B) * (8 / math.sqrt(15))
    official = torch.cat([P.expand(2, -1, -1), padded], 1)
    torch.testing.assert_close(out, official[:, : 80 + 37])
    assert out_mask.shape == (2, 117)


def test_official_checkpoint_width_mismatch():
    with pytest.raises(CheckpointError, match="hidden size 768, but the model's is 512"):
        DePT.from_pretrained(OFFICIAL_COLA, hidden_size=512)


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


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"v": 1})

    def failing(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, failing)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["f.json"]  # no temp file left behind
