"""DePT and ADePT as PEFT methods (dept_vl.peft): get_peft_model on text LMs, T5 / BART and native VLMs, with the
native tests' correctness check; PEFT's save / load, disable_adapter and several adapters; the two learning rates."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers as T
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError
from peft import PeftConfig, PeftModel, get_peft_model
from peft.utils import PeftType
from safetensors.torch import load_file

import dept_vl
from dept_vl import ConfigError
from dept_vl.peft import ADePTPeftConfig, DePTPeftConfig

from tiny_vlms import FAMILIES, LLAMA, VOCAB

PROMPT = [11, 12, 13]  # T: the tokens whose embeddings become P
SEQ2SEQ = dict(vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def text_model(kind):
    torch.manual_seed(0)
    if kind == "llama":
        return T.LlamaForCausalLM(T.LlamaConfig(**LLAMA)).eval()
    if kind == "t5":
        return T.T5ForConditionalGeneration(T.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16,
                                                       **SEQ2SEQ)).eval()
    return T.BartForConditionalGeneration(T.BartConfig(d_model=32, encoder_layers=1, decoder_layers=1,
                                                       encoder_attention_heads=2, decoder_attention_heads=2,
                                                       encoder_ffn_dim=64, decoder_ffn_dim=64,
                                                       scale_embedding=True, **SEQ2SEQ)).eval()


def build(name):
    """(bare model, inputs, whether it is an encoder-decoder) for a text model or a tiny native VLM family."""
    if name in FAMILIES:
        family = FAMILIES[name]
        inputs = family.inputs([[20, 21, 22, 23, 24]])
        if family.encoder_decoder:
            inputs["decoder_input_ids"] = torch.tensor([[2, 20, 21]])
        return family.build, inputs, family.encoder_decoder
    seq2seq = name != "llama"
    inputs = {"input_ids": torch.tensor([[20, 21, 22, 23, 24]])}
    if seq2seq:
        inputs["decoder_input_ids"] = torch.tensor([[0, 20, 21]])
    return (lambda: text_model(name)), inputs, seq2seq


def dept_model(make, seq2seq, config_cls=DePTPeftConfig, **settings):
    """A PEFT model of a fresh bare model with P = embed(T)."""
    model = make()
    config = config_cls(prompt_length=len(PROMPT), r=2, max_length=64,
                        task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM", **settings)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        prompts(peft_model).prompt_embeddings.copy_(model.get_input_embeddings()(torch.tensor(PROMPT)))
    return peft_model


def prompts(peft_model, name="default"):
    return peft_model.base_model.dept_layer.dept_prompts[name]


def with_prompt_tokens(inputs):
    out = dict(inputs, input_ids=torch.cat([torch.tensor([PROMPT]), inputs["input_ids"]], 1))
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in inputs:
            out[key] = torch.cat([torch.zeros(1, len(PROMPT), dtype=inputs[key].dtype), inputs[key]], 1)
    return out


def test_import_registers_dept_and_adept_with_peft():
    assert PeftType("DEPT") is PeftType.DEPT and "ADEPT" in list(PeftType)
    config = PeftConfig.from_peft_type(peft_type="DEPT", prompt_length=4, r=2, task_type="CAUSAL_LM")
    assert isinstance(config, DePTPeftConfig) and config.peft_type == "DEPT" and config.dept_config().r == 2
    with pytest.raises(ConfigError, match="prompt_length"):
        DePTPeftConfig(prompt_length=0)


@pytest.mark.parametrize("name", ["llama", "t5", "bart", "llava", "qwen2_vl", "paligemma", "florence2"])
def test_b_zero_and_p_from_tokens_equals_those_tokens_as_text(name):
    make, inputs, seq2seq = build(name)
    peft_model, bare = dept_model(make, seq2seq), make()
    with torch.no_grad():
        got = peft_model(**inputs).logits
        want = bare(**with_prompt_tokens(inputs)).logits
    if not seq2seq:  # decoder-only logits cover the prompt's positions too
        got, want = got[:, len(PROMPT):], want[:, len(PROMPT):]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["llama", "qwen2_vl"])
def test_save_load_disable_and_several_adapters(name, tmp_path):
    make, inputs, seq2seq = build(name)
    peft_model = dept_model(make, seq2seq)
    trainable = {n.rsplit(".", 1)[-1] for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_embeddings", "lora_embedding_A", "lora_embedding_B"}
    torch.nn.init.normal_(prompts(peft_model).lora_embedding_B, std=0.5)
    with torch.no_grad():
        adapted = peft_model(**inputs).logits
        with peft_model.disable_adapter():
            torch.testing.assert_close(peft_model(**inputs).logits, make()(**inputs).logits, atol=0, rtol=0)
    peft_model.save_pretrained(tmp_path / "a")
    assert set(load_file(tmp_path / "a" / "adapter_model.safetensors")) == {
        "prompt_embeddings", "lora_embedding_A", "lora_embedding_B"}
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["peft_type"] == "DEPT"
    own = dept_vl.DePT.from_pretrained(tmp_path / "a")  # dept-vl's reader skips PEFT's keys
    assert torch.equal(own.lora_embedding_B, prompts(peft_model).lora_embedding_B)

    loaded = PeftModel.from_pretrained(make(), tmp_path / "a")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, adapted)
    other = dept_model(make, seq2seq)  # B = 0: another adapter
    other.save_pretrained(tmp_path / "b")
    loaded.load_adapter(tmp_path / "b", adapter_name="b")
    loaded.set_adapter("b")
    with torch.no_grad():
        assert not torch.equal(loaded(**inputs).logits, adapted)
        loaded.set_adapter("default")
        assert torch.equal(loaded(**inputs).logits, adapted)


def test_push_to_hub_uploads_the_dept_adapter_which_loads_back_exactly(tmp_path, monkeypatch):
    """PeftModel.push_to_hub (transformers' PushToHubMixin) offline: HfApi.create_repo / create_commit and the
    model card's download are replaced; what the commit would upload is written to a folder and loaded back."""
    uploaded = tmp_path / "hub"

    def create_commit(self, repo_id, operations, **_):
        for op in operations:
            (uploaded / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
            (uploaded / op.path_in_repo).write_bytes(Path(op.path_or_fileobj).read_bytes())
        return f"https://huggingface.co/{repo_id}"

    def no_card(*_, **__):
        raise EntryNotFoundError("no README.md yet")

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **_: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(ModelCard, "load", no_card)
    make, inputs, _ = build("llava")
    peft_model = dept_model(make, False)
    torch.nn.init.normal_(prompts(peft_model).lora_embedding_B, std=0.5)
    assert peft_model.push_to_hub("me/llava-dept") == "https://huggingface.co/me/llava-dept"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in uploaded.iterdir()}
    assert json.loads((uploaded / "adapter_config.json").read_text())["peft_type"] == "DEPT"
    assert set(load_file(uploaded / "adapter_model.safetensors")) == {
        "prompt_embeddings", "lora_embedding_A", "lora_embedding_B"}
    loaded = PeftModel.from_pretrained(make(), uploaded)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, peft_model(**inputs).logits)


def test_adept_saves_its_network_and_loads_exactly(tmp_path):
    make, inputs, _ = build("llava")
    peft_model = dept_model(make, False, ADePTPeftConfig)
    assert peft_model.peft_config["default"].adept_r >= 1  # resolved from DePT's budget
    torch.nn.init.normal_(prompts(peft_model).ffn_up, std=0.5)
    peft_model.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == {
        "prompt_embeddings", "ffn_down", "ffn_down_bias", "ffn_up", "ffn_up_bias"}
    loaded = PeftModel.from_pretrained(make(), tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, peft_model(**inputs).logits)


def test_generate_returns_the_prompt_then_the_new_tokens():
    make, inputs, _ = build("llama")
    peft_model = dept_model(make, False)
    out = peft_model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8) and torch.equal(out[:, :5], inputs["input_ids"])


def test_two_learning_rates_a_task_type_is_needed_and_nothing_merges():
    make, _, _ = build("llama")
    groups = dept_vl.param_groups(dept_model(make, False), prompt_lr=0.3, lowrank_lr=1e-4)
    assert {g["name"]: (len(g["params"]), g["lr"]) for g in groups} == {"prompt": (1, 0.3), "lowrank": (2, 1e-4)}
    with pytest.raises(ConfigError, match="task_type"):
        get_peft_model(make(), DePTPeftConfig(prompt_length=2, r=2, max_length=16))
    with pytest.raises(ConfigError, match="no weights to merge"):
        dept_model(make, False).merge_and_unload()


# ---- the trainers ------------------------------------------------------------------------------------------------
COLOURS = ("red", "blue", "green", "yellow")


def colour_rows(repeat=4):
    """TRL's vision-language rows: ``messages`` (an image and a question, the colour as the answer) and ``images``."""
    from PIL import Image

    return [{"messages": [{"role": "user", "content": [{"type": "image"},
                                                       {"type": "text", "text": "what color is the shape ?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": colour}]}],
             "images": [Image.new("RGB", (32, 32), colour)]} for colour in COLOURS] * repeat


def sft_trainer(model, directory, peft_config=None, optimizers=(None, None), steps=12):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(directory / "out"), max_steps=steps, per_device_train_batch_size=4,
                     learning_rate=0.05, logging_steps=steps // 2, report_to=[], save_strategy="no", max_length=None,
                     use_cpu=True, bf16=False, dataloader_num_workers=0, disable_tqdm=True)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(colour_rows()),
                      processing_class=T.AutoProcessor.from_pretrained(directory / "llava"), peft_config=peft_config,
                      optimizers=optimizers)


def losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


@pytest.fixture(scope="module")
def trl_adapter(tmp_path_factory):
    """TRL's SFTTrainer(peft_config=DePTPeftConfig(...)) trained on a tiny saved LLaVA with its processor, saved
    with trainer.save_model: (its directory, the trainer)."""
    from conftest import save_tiny_llava

    root = tmp_path_factory.mktemp("trl")
    save_tiny_llava(root / "llava")
    trainer = sft_trainer(T.LlavaForConditionalGeneration.from_pretrained(root / "llava"), root,
                          DePTPeftConfig(prompt_length=4, r=2, max_length=64, task_type="CAUSAL_LM"))
    trainer.train()
    trainer.save_model(str(root / "adapter"))
    return root, trainer


def test_trl_sft_trains_dept_on_a_vlm_and_saves_a_peft_adapter(trl_adapter):
    root, trainer = trl_adapter
    first, last = losses(trainer)
    assert last < first - 0.5, (first, last)
    assert json.loads((root / "adapter" / "adapter_config.json").read_text())["peft_type"] == "DEPT"
    assert set(load_file(root / "adapter" / "adapter_model.safetensors")) == {
        "prompt_embeddings", "lora_embedding_A", "lora_embedding_B"}
    processor = T.AutoProcessor.from_pretrained(root / "llava")
    row = colour_rows(1)[0]
    inputs = processor(text=processor.apply_chat_template(row["messages"]), images=row["images"], return_tensors="pt")
    bare = T.LlavaForConditionalGeneration.from_pretrained(root / "llava")
    loaded = PeftModel.from_pretrained(T.LlavaForConditionalGeneration.from_pretrained(root / "llava"),
                                       root / "adapter")
    trained = trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, trained(**inputs).logits)
        with loaded.disable_adapter():
            assert torch.equal(loaded(**inputs).logits, bare(**inputs).logits)


def test_two_learning_rates_in_trl_through_param_groups(trl_adapter):
    root, _ = trl_adapter
    peft_model = get_peft_model(T.LlavaForConditionalGeneration.from_pretrained(root / "llava"),
                                DePTPeftConfig(prompt_length=4, r=2, max_length=64, task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW(dept_vl.param_groups(peft_model, prompt_lr=0.3, lowrank_lr=1e-2))
    trainer = sft_trainer(peft_model, root, optimizers=(optimizer, None), steps=6)
    a_before = prompts(peft_model).lora_embedding_A.detach().clone()
    trainer.train()
    first, last = losses(trainer)
    assert last < first, (first, last)
    assert {g["name"]: g["initial_lr"] for g in optimizer.param_groups} == {"prompt": 0.3, "lowrank": 1e-2}
    assert not torch.equal(prompts(peft_model).lora_embedding_A, a_before)


def test_hf_trainer_trains_dept_on_t5_and_saves_the_adapter(tmp_path):
    make, _, _ = build("t5")
    peft_model = dept_model(make, True)
    rows = [{"input_ids": torch.tensor([20 + i, 21, 22]), "labels": torch.tensor([30 + i, 1])} for i in range(4)] * 4
    args = T.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=10, per_device_train_batch_size=4,
                               learning_rate=0.1, logging_steps=5, report_to=[], save_strategy="no", use_cpu=True,
                               disable_tqdm=True)
    trainer = T.Trainer(model=peft_model, args=args, train_dataset=rows)
    trainer.train()
    first, last = losses(trainer)
    assert last < first, (first, last)
    trainer.save_model(str(tmp_path / "adapter"))
    assert set(load_file(tmp_path / "adapter" / "adapter_model.safetensors")) == {
        "prompt_embeddings", "lora_embedding_A", "lora_embedding_B"}


# ---- one adapter format ------------------------------------------------------------------------------------------
def test_a_dept_vl_vlm_run_loads_with_peft_and_a_trl_adapter_predicts(trl_adapter, tmp_path, capsys):
    import easy_vqa

    from dept_vl.cli import main
    from dept_vl.models import load_model

    root, _ = trl_adapter
    run = tmp_path / "run"
    assert main(["train", "--vlm", str(root / "llava"), "--task", "easyvqa", "--k-shot", "8", "--batch-size", "4",
                 "--max-steps", "2", "--test-examples", "2", "--output-dir", str(run), "--no-tensorboard",
                 "--set", "model.dept.max_length=48", "--set", "model.dept.r=2", "--lowrank-lr", "0.5",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    capsys.readouterr()
    ours = load_model(run / "model")
    batch = ours.prepare(["what color is the shape ?"], [colour_rows(1)[0]["images"][0]])
    peft_model = PeftModel.from_pretrained(T.LlavaForConditionalGeneration.from_pretrained(root / "llava"),
                                           run / "model")
    assert peft_model.peft_config["default"].base_model_name_or_path == str(root / "llava")
    with torch.no_grad():
        assert torch.equal(peft_model(**batch).logits, ours(**batch).logits)

    image = easy_vqa.get_test_image_paths()[0]
    assert main(["predict", image, "what color is the shape ?", "--checkpoint", str(root / "adapter")]) == 0
    answer = capsys.readouterr().out.strip()
    loaded = load_model(root / "adapter")
    assert answer == loaded.predict(["what color is the shape ?"], [image])[0]

    from PIL import Image

    from dept_vl.inference.predict import Predictor
    from dept_vl.serve.adapters import AdapterSet
    from dept_vl.serve.app import answer_all
    from dept_vl.serve.inputs import Question

    served = AdapterSet("cpu")  # serve --adapter trl=THE_TRL_DIR --adapter run=RUN: one VLM, both adapters
    served.add("trl", str(root / "adapter"))
    served.add("run", str(run))
    picture = Image.open(image).convert("RGB")
    got = answer_all(served, [Question([picture], "what color is the shape ?", adapter=name) for name in ("trl", "run")])
    assert got == [Predictor(str(root / "adapter"))([picture], "what color is the shape ?"),
                   Predictor(str(run))([picture], "what color is the shape ?")]


def test_an_official_dept_checkpoint_loads_with_peft(tmp_path):
    from test_dept_checkpoint import write_official_checkpoint

    make, inputs, _ = build("t5")
    write_official_checkpoint(tmp_path, l=3, r=2, s=16, d=32, lora_alpha=8)  # pickled from CUDA tensors
    loaded = PeftModel.from_pretrained(make(), tmp_path)
    assert loaded.peft_config["default"].prompt_length == 3
    model = make()
    ours = dept_vl.DePTWrapper(model, dept_vl.DePT.from_pretrained(tmp_path, hidden_size=32))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, ours(**inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("vlm, tokens", [(None, 28), ("tiny-vlm", 21)])  # tiny LLaVA; SmolVLM + Idefics3Processor
def test_bench_trl_times_dept_against_prompt_tuning_at_its_budget(vlm, tokens, tmp_path):
    from dept_vl.bench.speed import BenchConfig
    from dept_vl.bench.trl import format_trl, run_trl_bench

    cfg = BenchConfig(batch_size=2, prompt_length=4, r=2, max_length=64, paired=1, vlm=vlm)
    report = run_trl_bench(cfg, tmp_path, steps=1, log=lambda _: None)
    assert report["m"] == 8 and report["trainable"] == {"dept": 4 * 64 + 64 * 2 + 2 * 64, "pt": 8 * 64}
    assert report["tokens_per_example"] == tokens and report["vlm"] == f"{vlm or 'tiny-llava'} (built offline)"
    assert all(rate > 0 for rate in report["steps_per_second"].values()) and report["dept_over_pt_time"]["median"] > 0
    assert "time dept / pt, paired" in format_trl(report)


def test_bench_trl_llava_shape_processor_writes_the_towers_image_tokens():
    from dept_vl.bench.native_scale import LLAVA_SHAPES
    from dept_vl.bench.trl_models import llava_processor

    processor = llava_processor("llava-clip-s-shape")
    row = colour_rows(1)[0]
    ids = processor.apply_chat_template([row["messages"]], tokenize=True, return_dict=True, images=[row["images"]],
                                        processor_kwargs={"return_tensors": "pt"})["input_ids"][0]
    text = LLAVA_SHAPES["llava-clip-s-shape"][1]
    assert (ids == text["vocab_size"] - 1).sum() == 196 and int(ids.max()) == text["vocab_size"] - 1  # 224 px / 16
    assert processor.tokenizer.convert_ids_to_tokens(int(ids[0])) == "user"
