"""``dept-vl bench --trl``: TRL's ``SFTTrainer`` training a native VLM with ``DePTPeftConfig`` against PEFT's own
``PromptTuningConfig`` at DePT's parameter budget (m = budget / d virtual tokens), timed paired (the two take turns,
``--trl-steps`` steps each, ``--paired`` turns): steps per second of each and the DePT / PT ratio.

The model (trl_models.py) is a tiny LLaVA built offline, or ``--vlm``'s: a named shape of the native bench
(``smolvlm-shape``, ``llava-clip-s-shape``, ``tiny-vlm``) built offline with a processor, or a directory or hub model
of one's own. Needs ``trl`` (the test extra).
"""

from __future__ import annotations

import time
from pathlib import Path

import transformers as T
from datasets import Dataset
from peft import PromptTuningConfig
from PIL import Image

from ..methods import Budget, DePTConfig
from ..methods.dept import prompt_tuning_at
from ..peft import DePTPeftConfig
from .speed import BenchConfig, machine
from .timing import paired_ratio
from .trl_models import COLOURS, trl_vlm


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
    vlm = trl_vlm(cfg.vlm, directory)
    dept = DePTConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length)
    trainers = {"dept": DePTPeftConfig(prompt_length=cfg.prompt_length, r=cfg.r, max_length=cfg.max_length,
                                       task_type="CAUSAL_LM")}
    first = trainer_for(vlm, trainers["dept"], cfg, steps, directory / "dept")
    width = first.model.get_input_embeddings().weight.shape[1]
    m = prompt_tuning_at(Budget.of(dept, width)).prompt_length
    tokens = first.data_collator([first.train_dataset[0]])["input_ids"].shape[1]  # image tokens + text, one row
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
    built = cfg.vlm is None or vlm != cfg.vlm
    return {"bench": "trl", "machine": machine(cfg.device), "batch_size": cfg.batch_size, "steps": steps,
            "vlm": f"{cfg.vlm or 'tiny-llava'} (built offline)" if built else vlm, "tokens_per_example": tokens,
            "prompt_length": cfg.prompt_length, "r": cfg.r, "max_length": cfg.max_length, "m": m,
            "trainable": trainable, "steps_per_second": rates, "dept_over_pt_time": ratio}


def format_trl(report: dict) -> str:
    rates, ratio = report["steps_per_second"], report["dept_over_pt_time"]
    return "\n".join([
        f"TRL SFTTrainer, {report['vlm']}, batch {report['batch_size']} of {report['tokens_per_example']} tokens "
        f"(image + text), {report['machine']}",
        f"  dept (l={report['prompt_length']}, r={report['r']}): {rates['dept']:.2f} steps/s, "
        f"{report['trainable']['dept']:,} trainable",
        f"  pt   (m={report['m']}): {rates['pt']:.2f} steps/s, {report['trainable']['pt']:,} trainable",
        f"  time dept / pt, paired: {ratio['median']:.3f} (quartiles {ratio['q1']:.3f} - {ratio['q3']:.3f}, "
        f"{ratio['pairs']} pairs)"])
