"""Shared fixtures: tiny randomly initialised models saved with save_pretrained and loaded by path, with a
T5-style tokenizer built here. Nothing outside the repository is needed: the real t5-base tokenizer and the
official DePT checkpoint in ../shared/assets (this workspace and CI only) are used by the few tests about them,
which skip with a reason starting "needs ../shared/assets" where the folder is absent."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch

for _offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):  # the tests never download
    os.environ.setdefault(_offline, "1")

from dept_vl.models.tiny_vlm import (  # noqa: E402,F401 (after the offline switches; tests use them)
    CHAT_TEMPLATE, EASYVQA_WORDS, chat_tokenizer, save_tiny_llava)

TINY_RECIPE = """
model:
  vision: {encoder: efficientnet-lite0, image_size: 32, pool_tokens: 1}
  text: {backbone: random, max_length: 16, max_target_length: 4,
         random: {d_model: 32, d_ff: 64, num_layers: 1, num_heads: 2}}
  dept: {prompt_length: 4, r: 2, max_length: 24}
train: {task: easyvqa, k_shot: 48, max_steps: 4, batch_size: 8, test_examples: 8, log_every: 2, tensorboard: false}
"""  # a training recipe that runs in seconds on a CPU

SHARED_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
T5_TOKENIZER = SHARED_ASSETS / "t5"
OFFICIAL_COLA = SHARED_ASSETS / "dept-official-cola"
NEEDS_SHARED = "needs ../shared/assets"  # .ci/run allows only these skips (and CUDA's) where ../shared is hidden


def shared_asset(path: Path) -> Path:
    """``path`` under ../shared/assets, or skip the test saying which asset it needs."""
    if not path.exists():
        pytest.skip(f"{NEEDS_SHARED}/{path.name}: a real asset, present in this workspace and in CI only")
    return path


WORDS = """what which who where how many is are there the a an of this that in on image picture shape color colour
red green blue yellow gray grey black white brown circle rectangle triangle square left right true false yes no or
please cat dog man holding two vqa gqa nlvr caption hi""".split()
T5_VOCAB_SIZE = 32100  # t5-base's tokenizer: tiny models get its embedding size


@pytest.fixture(scope="session")
def word_tokenizer():
    """A T5-style tokenizer built here (pad 0, </s> 1, <unk> 2, EOS appended) with t5-base's 32,100 entries:
    the words the tests use, then filler tokens."""
    from dept_vl.models.random_t5 import build_word_tokenizer

    fillers = [f"tok{i}" for i in range(T5_VOCAB_SIZE - 3 - len(set(WORDS)))]
    tokenizer = build_word_tokenizer(WORDS + fillers)
    assert len(tokenizer) == T5_VOCAB_SIZE
    return tokenizer


@pytest.fixture(scope="session")
def real_t5_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared_asset(T5_TOKENIZER)))


def save_tiny(tmp_path_factory, name, model_cls, config, tokenizer=None) -> str:
    """Build ``model_cls(config)`` with seed 0, save it (and the tokenizer) under a temp dir, return the path."""
    path = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    model_cls(config).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return str(path)


def _t5_config(vocab, d_model, layers):
    from transformers import T5Config

    return T5Config(vocab_size=vocab, d_model=d_model, d_ff=64, num_layers=layers, num_decoder_layers=layers,
                    num_heads=2, d_kv=16, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, word_tokenizer):
    """A 2-layer, width-32 T5 with the test tokenizer, saved to disk."""
    from transformers import T5ForConditionalGeneration

    return save_tiny(tmp_path_factory, "tiny-t5", T5ForConditionalGeneration, _t5_config(len(word_tokenizer), 32, 2),
                     word_tokenizer)


@pytest.fixture(scope="session")
def tiny_t5_wide_dir(tmp_path_factory, word_tokenizer):
    """Like tiny_t5_dir but width 48: a backbone that an adapter for width 32 does not fit."""
    from transformers import T5ForConditionalGeneration

    return save_tiny(tmp_path_factory, "tiny-t5-wide", T5ForConditionalGeneration,
                     _t5_config(len(word_tokenizer), 48, 1), word_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, word_tokenizer):
    """A 2-layer decoder-only Llama with the test tokenizer (any tokenizer works for a random model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(word_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=0, initializer_range=0.2)
    return save_tiny(tmp_path_factory, "tiny-llama", LlamaForCausalLM, config, word_tokenizer)


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory, word_tokenizer):
    """A 1+1-layer BART (scaled word embeddings) with the test tokenizer."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=len(word_tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_position_embeddings=128, scale_embedding=True,
                        pad_token_id=0, eos_token_id=1, bos_token_id=0, decoder_start_token_id=1,
                        forced_eos_token_id=None, init_std=0.2)
    return save_tiny(tmp_path_factory, "tiny-bart", BartForConditionalGeneration, config, word_tokenizer)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return save_tiny(tmp_path_factory, "tiny-clip", CLIPVisionModel, CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8))


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    return save_tiny(tmp_path_factory, "tiny-siglip", SiglipVisionModel, SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8))


def tiny_model_config(vision: str, backbone: str, **overrides):
    from dept_vl import ModelConfig

    data = {
        "vision": {"encoder": vision},
        "text": {"backbone": backbone, "max_length": 16, "max_target_length": 8},
        "dept": {"prompt_length": 4, "r": 4, "max_length": 64},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ModelConfig.from_dict(data)


@pytest.fixture(scope="session")
def tiny_vlm(tiny_clip_dir, tiny_t5_dir):
    from dept_vl import VisionLanguageModel

    torch.manual_seed(0)
    return VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir))


@pytest.fixture(scope="session")
def tiny_easyvqa_run(tmp_path_factory):
    """The output directory of a 30-step easy-vqa run of TINY_RECIPE (what serve and bench-serve load)."""
    from dept_vl.cli import main

    root = tmp_path_factory.mktemp("tiny-easyvqa-run")
    (root / "tiny.yaml").write_text(TINY_RECIPE)
    assert main(["train", "--config", str(root / "tiny.yaml"), "--output-dir", str(root / "run"), "--cache-dir",
                 str(root / "cache"), "--max-steps", "30", "--test-examples", "4"]) == 0
    return root / "run"


# ---- the four VL datasets, in their official raw formats, converted by data_scripts/ ----------------------------
FIXTURES = Path(__file__).parent / "fixtures"
DATA_SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def load_data_script(name: str):
    """Import ``data_scripts/<name>.py`` (not part of the package) as a module."""
    import importlib.util
    import sys

    if str(DATA_SCRIPTS) not in sys.path:
        sys.path.insert(0, str(DATA_SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, DATA_SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image(path: Path, seed: int, size=(40, 32), mode="RGB", fmt=None) -> Path:
    """A small random image made with Pillow."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path, format=fmt)
    return path


def gqa_hf_rows(image=True):
    """Three GQA questions on two images as a ``datasets.Dataset`` (the lmms-lab/GQA columns, plus images)."""
    import datasets
    from PIL import Image

    rows = {"id": ["q1", "q2", "q3"], "imageId": ["n1", "n2", "n1"],
            "question": ["What is it? ", "Is it red?", "Which color?"], "answer": ["cup", "no", "red"],
            "types": [{"structural": "query"}, {"structural": "verify"}, {"structural": "query"}]}
    features = {"id": datasets.Value("string"), "imageId": datasets.Value("string"),
                "question": datasets.Value("string"), "answer": datasets.Value("string"),
                "types": {"structural": datasets.Value("string")}}
    if image:
        rows["image"] = [Image.new("RGB", (s, s)) for s in (4, 6, 4)]
        features["image"] = datasets.Image()
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


def make_raw_datasets(root: Path) -> dict[str, Path]:
    """Official raw layouts (fixture JSON + Pillow images) under ``root``; returns each raw directory."""
    import json
    import shutil

    raw = {name: root / f"raw-{name}" for name in ("coco", "vqav2", "gqa", "nlvr2", "nlvr2-images")}
    shutil.copytree(FIXTURES / "coco", raw["coco"])
    shutil.copytree(FIXTURES / "vqav2", raw["vqav2"])
    shutil.copy(FIXTURES / "coco" / "dataset_coco.json", raw["vqav2"])
    for image in json.loads((FIXTURES / "coco" / "dataset_coco.json").read_text())["images"]:
        for folder in (raw["coco"], raw["vqav2"]):
            write_image(folder / image["filepath"] / image["filename"], image["cocoid"], fmt="JPEG")
    shutil.copytree(FIXTURES / "gqa", raw["gqa"])
    for split in ("train", "val", "testdev"):
        for n, q in enumerate(json.loads((FIXTURES / "gqa" / f"{split}_balanced_questions.json").read_text()).values()):
            write_image(raw["gqa"] / "images" / f"{q['imageId']}.jpg", n, fmt="JPEG")
    shutil.copytree(FIXTURES / "nlvr2", raw["nlvr2"])
    for split in ("train", "dev", "test1"):
        for n, line in enumerate((FIXTURES / "nlvr2" / f"{split}.json").read_text().splitlines()):
            record = json.loads(line)
            if record["identifier"].startswith("dev-999"):
                continue  # a statement whose images are missing: the converter drops it
            folder = raw["nlvr2-images"] / split / record.get("directory", "")
            stem = record["identifier"].rsplit("-", 1)[0]
            for i in (0, 1):
                write_image(folder / f"{stem}-img{i}.png", 100 * n + i)
    return raw


@pytest.fixture(scope="session")
def vl_data(tmp_path_factory) -> dict[str, Path]:
    """task name -> a --data-dir built from the raw fixtures by the data scripts."""
    root = tmp_path_factory.mktemp("vl-data")
    raw = make_raw_datasets(root)
    out = {name: root / name for name in ("caption", "vqa", "gqa", "nlvr2")}
    load_data_script("prepare_coco").convert(raw["coco"], out["caption"])
    load_data_script("prepare_vqav2").convert(raw["vqav2"], out["vqa"])
    load_data_script("prepare_gqa").convert(raw["gqa"], out["gqa"])
    load_data_script("prepare_nlvr2").convert(raw["nlvr2"], raw["nlvr2-images"], out["nlvr2"])
    return out


@contextlib.contextmanager
def unwritable(path: Path):
    """``path`` (a directory, created) that this process cannot write in: mode 0555, and for root, who ignores
    modes, the immutable attribute (``chattr +i``); restored afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o555)
    immutable = _writable(path) and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        if _writable(path):
            pytest.skip("cannot make a directory unwritable here (root, and no chattr +i on this file system)")
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        os.chmod(path, 0o755)


def _writable(path: Path) -> bool:
    try:
        (path / ".probe").touch()
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


# ---- a native Hugging Face VLM saved with its processor (what `dept-vl train --vlm DIR` loads) ------------------
# the package's own tiny LLaVA (`dept-vl make-tiny-vlm DIR`): what a user's directory holds


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))
