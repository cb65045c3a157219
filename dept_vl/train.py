"""``dept-vl train``: the training loop on accelerate (one CPU, one GPU, or ``accelerate launch`` on many).

Two learning rates (prompt / low-rank) plus one for the projection (and one for backbone weights under
``--method lora|full``), warmup + linear decay, gradient accumulation, mixed precision, validation with the
task metric and the best checkpoint kept, resumable checkpoints, SIGINT / SIGTERM handling, NaN detection.
Everything of a run lives in ``OUTPUT``: checkpoints/, model/ (the chosen weights), metrics.json,
predictions-<task>-<split>.jsonl, curves.png, recipe.yaml, logs/ (TensorBoard).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections import ChainMap
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import load_state_checked, read_safetensors, write_json, ADAPTER_WEIGHTS
from .config import FEATURES
from .curves import plot_curves
from .data import BatchOrder, ImageInputs, Prefetcher, TaskSplit, k_shot, make_batch
from .errors import CheckpointError, TrainingError, TrainingInterrupted
from .evaluate import evaluate_split, write_predictions
from .feature_cache import FeatureCache, default_cache_dir, encoder_signature
from .model import VisionLanguageModel
from .optim import param_groups
from .random_backbone import materialize_random_backbone
from .tasks import get_task
from .train_config import Recipe
from .train_state import (best_checkpoint, latest_checkpoint, load_state, restore_rng, rng_state, save_checkpoint,
                          write_dir_atomically)
from .vision import build_vision_encoder

RECIPE_FILE = "recipe.yaml"


def output_dir(recipe: Recipe) -> Path:
    return Path(recipe.train.output_dir.format(task="+".join(recipe.train.tasks), method=recipe.model.method))


def load_splits(recipe: Recipe, log) -> dict[str, list[TaskSplit | None]]:
    """Train (k-shot when asked), validation and test splits of every task."""
    cfg = recipe.train
    out = {"train": [], "eval": [], "test": []}
    for name in cfg.tasks:
        task = get_task(name)
        task.skip_bad_lines = cfg.skip_bad_lines
        default = dict(zip(("train", "eval", "test"), task.default_splits))
        for role, chosen in (("train", cfg.train_split), ("eval", cfg.eval_split), ("test", cfg.test_split)):
            split = chosen or default[role]
            if not split:  # e.g. easy-vqa has no validation split
                out[role].append(None)
                continue
            data = task.load(split, cfg.data_dir_for(name))
            if role == "train":
                data = k_shot(data, cfg.k_shot, cfg.seed)
            data.check_images()
            out[role].append(TaskSplit(task, data))
            log(f"{name} {role}: {split}, {len(data)} examples")
    return out


def build_images(recipe: Recipe, splits: dict, vision, accelerator, log) -> ImageInputs:
    """Per task, a feature cache holding every image of its splits (built by the main process), or raw images."""
    cfg = recipe.train
    caches = []
    for t, name in enumerate(cfg.tasks):
        if not cfg.cache_features or vision is None:
            caches.append(None)
            continue
        views = []
        for role, limit in (("train", 0), ("eval", cfg.eval_examples), ("test", cfg.test_examples)):
            split = splits[role][t]
            if split is not None:
                views.append(split.data.images_for(split.data.examples[: limit or None]))
        images = ChainMap(*views)
        signature = encoder_signature(recipe.model.vision.encoder, vision)
        root = Path(cfg.cache_dir) / name if cfg.cache_dir else default_cache_dir(name, signature)
        with accelerator.main_process_first():
            cache = FeatureCache(root, signature)
            if cache.missing(list(images)):
                log(f"{name}: caching image features in {root}")
            cache.build(images, vision, progress=accelerator.is_main_process)
        caches.append(cache)
    return ImageInputs(caches)


class StopFlag:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint at the end of the step and stops."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(recipe: Recipe, resume: bool = False, log=print) -> dict | None:
    """Run ``recipe`` to the end; return the metrics written to ``OUTPUT/metrics.json`` (on the main process;
    None on the others)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    cfg, start_time = recipe.train, time.time()
    out = output_dir(recipe)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, log_with="tensorboard" if cfg.tensorboard else None,
                              project_dir=str(out / "logs"))
    main = accelerator.is_main_process
    say = log if main else (lambda *_: None)
    set_seed(cfg.seed)
    splits = load_splits(recipe, say)

    texts = [t for s in splits["train"] for ex in s.data.examples for t in (ex.source, *ex.targets)]
    with accelerator.main_process_first():  # the main process writes the random backbone; the others read it
        recipe.model = materialize_random_backbone(recipe.model, texts, out / "backbone", write=main)
    v = recipe.model.vision
    vision = None if v.encoder == FEATURES else build_vision_encoder(v.encoder, image_size=v.image_size,
                                                                     pool_tokens=v.pool_tokens, pretrained=v.pretrained)
    if vision is not None:
        vision = vision.to(accelerator.device)
    model = VisionLanguageModel(recipe.model, vision=vision)  # before the cache: a bad backbone fails fast
    images = build_images(recipe, splits, vision, accelerator, say)
    raw = model
    groups = param_groups(model, cfg.prompt_lr, cfg.lowrank_lr, cfg.weight_decay, other_lr=cfg.projection_lr,
                          backbone_lr=cfg.lr)
    optimizer = torch.optim.AdamW(groups, fused=accelerator.device.type == "cuda" or None)
    order = BatchOrder([len(s.data) for s in splits["train"]], cfg.batch_size * accelerator.num_processes, cfg.seed,
                       accelerator.process_index, accelerator.num_processes)
    total = cfg.max_steps or math.ceil(cfg.epochs * order.steps_per_epoch / cfg.grad_accum)
    if cfg.lr_schedule == "linear":
        scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
    else:
        scheduler = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt_root = out / "checkpoints"

    step, history, best = 0, [], None
    if resume:
        directory = latest_checkpoint(ckpt_root)
        if directory is None:
            raise CheckpointError(f"--resume: no complete checkpoint in {ckpt_root}")
        state = load_state(directory)
        _load_trainable(raw, directory)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
        step, history, best = state["step"], state["history"], state["best"]
        say(f"resumed from {directory} at step {step}")
    recipe_text = recipe.to_yaml()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        recipe.save(out / RECIPE_FILE)
    if cfg.tensorboard:
        accelerator.init_trackers("dept-vl")

    def checkpoint(at_step: int, is_best: bool = False) -> Path:
        state = {"step": at_step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": rng_state(), "history": history, "best": best}
        path = ckpt_root / f"step-{at_step:06d}"
        if main:
            path = save_checkpoint(ckpt_root, at_step, raw, state, cfg.keep_checkpoints, is_best,
                                   {RECIPE_FILE: recipe_text})
        accelerator.wait_for_everyone()
        return path

    def score(role: str, limit: int) -> tuple[dict, list]:
        """Scores of every task's ``role`` split (keys prefixed by task when there are several) and, per task,
        (split, examples, predictions)."""
        scores, outputs = {}, []
        for t, split in enumerate(splits[role]):
            if split is not None:
                result, predictions = evaluate_split(raw, split, images, t, limit=limit,
                                                     batch_size=cfg.eval_batch_size, num_beams=cfg.num_beams,
                                                     accelerator=accelerator, desc=role)
                scores.update({_key(cfg, split, k): val for k, val in result.items()})
                outputs.append((split, split.data.examples[: limit or None], predictions))
        return scores, outputs

    params = [p for p in raw.parameters() if p.requires_grad]
    model.train()
    bar = tqdm(total=total, initial=step, desc=f"train {recipe.model.method}", unit="step", disable=not main)
    device = accelerator.device
    # The loop keeps the host ahead of the device: the loss sum and the first non-finite step stay on the device
    # and are read only where the host needs them (logging, validation, checkpoints; every step under --skip-nan).
    running, first_bad = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
    since, tick = 0, time.time()

    def check_finite() -> None:
        bad = accelerator.gather(first_bad.reshape(1))
        bad = bad[bad > 0]
        if bad.numel():
            last = latest_checkpoint(ckpt_root)
            raise TrainingError(f"the loss became nan or inf at step {int(bad.min())}; stopped without saving it. "
                                f"Last good checkpoint: {last or 'none'} (lower the learning rates, or pass "
                                "--skip-nan to skip such steps)")

    prefetch = Prefetcher(lambda ms: make_batch(raw, splits["train"], images, order.batch(ms), cfg.seed, ms,
                                                device="cpu"), device)
    with StopFlag() as stop, prefetch:
        while step < total:
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                batch = prefetch.get(step * cfg.grad_accum + micro)
                sync = accelerator.no_sync(model) if micro < cfg.grad_accum - 1 else contextlib.nullcontext()
                with sync:
                    loss = model(**batch).loss / cfg.grad_accum
                    accelerator.backward(loss)
                loss_sum = loss_sum + loss.detach()
            finite = torch.isfinite(loss_sum)
            if cfg.skip_nan and accelerator.reduce(finite.float(), "sum").item() < accelerator.num_processes:
                say(f"step {step + 1}: loss not finite, step skipped (--skip-nan)")
                history.append({"step": step + 1, "skipped_nan": True})
            else:
                first_bad = torch.where((first_bad == 0) & ~finite, step + 1, first_bad)
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                running, since = running + loss_sum, since + 1
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            bar.update(1)
            evaluate = cfg.eval_every and (step % cfg.eval_every == 0 or step == total) and any(splits["eval"])
            save = step == total or (cfg.save_every and step % cfg.save_every == 0)
            at_log = step % cfg.log_every == 0 or step == total
            if accelerator.num_processes == 1:
                requested = stop.signal is not None
            else:  # a collective: only where the processes meet anyway
                requested = (at_log or evaluate or save) and _any_process(accelerator, stop.signal is not None)
            if at_log or evaluate or save or requested:
                check_finite()
            if since and at_log:
                rate = since / (time.time() - tick)
                entry = {"step": step, "loss": accelerator.reduce(running, "mean").item() / since,
                         "steps_per_s": rate, **{f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}}
                history.append(entry)
                accelerator.log({k: val for k, val in entry.items() if k != "step"}, step=step)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}",
                                it_s=f"{rate:.1f}")
                running, since, tick = torch.zeros((), device=device), 0, time.time()
            is_best = False
            if evaluate:
                prefetch.wait()  # the next batches are built: the tokenizer and the cache are free
                scores, _ = score("eval", cfg.eval_examples)
                scores["score"] = _primary(cfg, splits["eval"], scores)
                history.append({"step": step, **{f"val/{k}": val for k, val in scores.items()}})
                accelerator.log({f"val/{k}": val for k, val in scores.items()}, step=step)
                is_best = best is None or scores["score"] > best["score"]
                if is_best:
                    best = {"step": step, **scores}
                say(f"step {step}: validation {scores['score']:.4f} (best {best['score']:.4f} at step {best['step']})")
            if is_best or requested or save:
                saved = checkpoint(step, is_best)
            if requested:
                bar.close()
                raise TrainingInterrupted(f"{stop.signal or 'signal'} at step {step}/{total}: checkpoint saved to "
                                          f"{saved}; continue with the same command plus --resume")
    bar.close()

    best_dir = best_checkpoint(ckpt_root) if best else None
    if best_dir is not None and best["step"] != step:
        _load_trainable(raw, best_dir)
    if main:
        write_dir_atomically(out / "model", lambda tmp: (raw.save_pretrained(tmp),
                                                         (tmp / RECIPE_FILE).write_text(recipe_text)))
    metrics = {"train": {"steps": step, "method": recipe.model.method,
                         "trainable_params": sum(p.numel() for p in params), "processes": accelerator.num_processes,
                         "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None)}}
    if best:
        metrics["val"] = dict(best)
    test_scores, outputs = score("test", cfg.test_examples)
    for split, examples, predictions in outputs if main else []:
        write_predictions(out / f"predictions-{split.task.name}-{split.data.split}.jsonl", examples, predictions)
    if test_scores:
        metrics["test"] = test_scores
    metrics["train"]["weights_agree_across_processes"] = _weights_agree(accelerator, params)
    metrics["train"]["seconds"] = round(time.time() - start_time, 1)
    if main:
        write_json(out / "metrics.json", metrics)
        plot_curves(history, out / "curves.png")
    accelerator.end_training()
    _release_accelerator_state()
    return metrics if main else None


def _load_trainable(model, directory: Path) -> None:
    """Put a checkpoint's trainable weights into ``model`` (the frozen backbone stays as it is)."""
    load_state_checked(model, read_safetensors(directory / ADAPTER_WEIGHTS), str(directory),
                       expected=set(model.trainable_parameters()))


def _key(cfg, split: TaskSplit, metric: str) -> str:
    return metric if len(cfg.tasks) == 1 else f"{split.task.name}/{metric}"


def _primary(cfg, eval_splits, scores: dict) -> float:
    """The number the best checkpoint is chosen by: each task's own metric, averaged over tasks."""
    values = [scores[_key(cfg, s, s.task.metric)] for s in eval_splits if s is not None]
    return sum(values) / len(values)


def _any_process(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item())


def _weights_agree(accelerator, params) -> bool:
    """All processes hold the same trainable weights (a DDP sanity check)."""
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1).to(accelerator.device)
    gathered = accelerator.gather(checksum)
    return bool(torch.all(gathered == gathered[0]).item())


def _release_accelerator_state() -> None:
    """Forget this run's accelerate settings (mixed precision, ...) so that a later ``train`` in the same process
    (a benchmark, a notebook) may use others; the process group itself stays."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
