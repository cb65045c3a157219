"""``dept-vl bench --trl``: TRL's ``SFTTrainer`` training a native VLM with ``DePTPeftConfig`` against PEFT's own
``PromptTuningConfig`` at DePT's parameter budget (m = budget / d virtual tokens), timed paired (the two take turns,
``--trl-steps`` steps each, ``--paired`` turns): steps per second of each and the DePT / PT ratio.

The model is a LLaVA built offline with random weights, saved with a processor (a word-level tokenizer, CLIP's
image processor, a chat template), so that TRL's vision-language collator reads ``messages`` + ``images`` rows as it
reads a real model's; ``--vlm`` names a directory or hub model of one's own instead. Needs ``trl`` (the test extra).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import transformers as T
from datasets import Dataset
from peft import PromptTuningConfig
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers

from ..methods import Budget, DePTConfig
from ..methods.dept import prompt_tuning_at
from ..peft import DePTPeftConfig
from .speed import BenchConfig, machine
from .timing import paired_ratio

WORDS = "user assistant : ? . what color is the shape red blue green yellow circle square a of".split()
COLOURS = ("red", "blue", "green", "yellow")
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% if m['role'] == 'assistant' %}</s>"
            "{% endif %} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")


def build_llava(directory: Path) -> str:
    """A tiny LLaVA (CLIP 32 px, 16 image tokens; a 2-layer Llama of width 64) with its processor, saved once."""
    if (directory / "config.json").is_file():
        return str(directory)
    specials = ["<pad>", "</s>", "<unk>", "<image>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = T.PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="</s>",
                                          unk_token="<unk>", additional_special_tokens=["<image>"])
    images = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = T.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, chat_template=TEMPLATE,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8),
        text_config=T.LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                                  pad_token_id=0, bos_token_id=1, eos_token_id=1),
        image_token_id=vocab["<image>"], vision_feature_select_strategy="default")
    torch.manual_seed(0)
    T.LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def colour_rows(count: int) -> list[dict]:
    """TRL's vision-language rows: an image and a question, its colour as the answer."""
    return [{"messages": [{"role": "user", "content": [{"type": "image"},
                                                       {"type": "text", "text": "what color is the shape ?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": COLOURS[i % 4]}]}],
             "images": [Image.new("RGB", (32, 32), COLOURS[i % 4])]} for i in range(count)]


def trainer_for(vlm: str, peft_config, cfg: BenchConfig, steps: int, directory: Path):
    """An SFTTrainer of a fresh copy of ``vlm`` with ``peft_config``, ``steps`` steps per ``train()``."""
    from trl import SFTConfig, SFTTrainer  # optional (the test extra): only this bench needs it

    args = SFTConfig(output_dir=str(directory), max_steps=steps, per_device_train_batch_size=cfg.batch_size,
                     learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no", max_length=None,
                     use_cpu=cfg.device == "cpu", bf16=False, dataloader_num_workers=0, disable_tqdm=True)
    trainer = SFTTrainer(model=T.AutoModelForImageTextToText.from_pretrained(vlm), args=args,
                         train_dataset=Dataset.from_list(colour_rows(cfg.batch_size * steps)),
                         processing_class=T.AutoProcessor.from_pretrained(vlm), peft_config=peft_config)
    trainer.remove_callback(T.PrinterCallback)  # the report is the bench's output, not each run's metrics
    return trainer


def run_trl_bench(cfg: BenchConfig, directory: Path, steps: int, log=print) -> dict:
    """Steps per second of SFTTrainer with DePT and with PEFT's prompt tuning at DePT's budget, paired."""
    vlm = build_llava(directory / "tiny-llava") if cfg.vlm in (None, "tiny-llava") else cfg.vlm
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    trainers = {"dept": DePTPeftConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length,
                                       task_type="CAUSAL_LM")}
    first = trainer_for(vlm, trainers["dept"], cfg, steps, directory / "dept")
    width = first.model.get_input_embeddings().weight.shape[1]
    m = prompt_tuning_at(Budget.of(dept, width)).prompt_length
    trainers = {"dept": first, "pt": trainer_for(vlm, PromptTuningConfig(num_virtual_tokens=m, task_type="CAUSAL_LM"),
                                                 cfg, steps, directory / "pt")}
    seconds: dict[str, list[float]] = {"dept": [], "pt": []}

    def timed(name: str):
        def run() -> float:
            start = time.perf_counter()
            trainers[name].train()
            seconds[name].append(time.perf_counter() - start)
            return seconds[name][-1]
        return run

    log(f"TRL SFTTrainer on {vlm}: DePT (l={cfg.prompt_length}, r={cfg.r}) against prompt tuning (m={m}), "
        f"{steps} steps each, {cfg.paired} turns")
    ratio = paired_ratio(timed("dept"), timed("pt"), max(cfg.paired, 1), warmup=1)
    rates = {name: steps * (len(times) - 1) / sum(times[1:]) for name, times in seconds.items()}  # not the warmup
    trainable = {name: sum(p.numel() for p in t.model.parameters() if p.requires_grad) for name, t in trainers.items()}
    return {"bench": "trl", "machine": machine(cfg.device), "vlm": vlm, "batch_size": cfg.batch_size,
            "steps": steps, "prompt_length": cfg.prompt_length, "r": cfg.r, "max_length": cfg.max_length, "m": m,
            "trainable": trainable, "steps_per_second": rates, "dept_over_pt_time": ratio}


def format_trl(report: dict) -> str:
    rates, ratio = report["steps_per_second"], report["dept_over_pt_time"]
    return "\n".join([
        f"TRL SFTTrainer, {report['vlm']}, batch {report['batch_size']}, {report['machine']}",
        f"  dept (l={report['prompt_length']}, r={report['r']}): {rates['dept']:.2f} steps/s, "
        f"{report['trainable']['dept']:,} trainable",
        f"  pt   (m={report['m']}): {rates['pt']:.2f} steps/s, {report['trainable']['pt']:,} trainable",
        f"  time dept / pt, paired: {ratio['median']:.3f} (quartiles {ratio['q1']:.3f} - {ratio['q3']:.3f}, "
        f"{ratio['pairs']} pairs)"])
