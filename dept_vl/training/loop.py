"""``dept-vl train``: the training loop on accelerate (one CPU, one GPU, or ``accelerate launch`` on many).

Two learning rates (prompt / low-rank) plus one for the projection (and one for backbone weights under
``--method lora|full``), warmup + linear decay, gradient accumulation, mixed precision, validation with the
task metric and the best checkpoint kept, resumable checkpoints, SIGINT / SIGTERM handling, NaN detection.
``train`` is ``setup`` (session.py: data, model, optimizer; ``restore`` on --resume), ``fit`` (the steps, with
``validate`` and ``save`` at their points) and ``finish`` (the chosen weights, the test split, metrics).
Where each file goes is ``RunDir``'s business.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import torch

from ..data.batches import Prefetcher, TaskSplit, make_batch
from ..errors import TrainingError, TrainingInterrupted
from ..io import DiskFullError
from ..progress import progress, quiet
from ..inference.evaluate import Decoding, evaluate_split, write_predictions
from ..runs.recipe import Recipe
from ..runs.run_dir import RECIPE_FILE, RunDir
from .curves import plot_curves
from .session import Session, begin, load_splits, make_accelerator, restore, setup
from .state import best_checkpoint, latest_checkpoint, rng_state, save_checkpoint


def train(recipe: Recipe, resume: bool = False, overwrite: bool = False, log=print, progress: bool | None = None
          ) -> dict | None:
    """Run ``recipe`` to the end; return the metrics written to ``OUTPUT/metrics.json`` (on the main process;
    None on the others). An output directory that holds a run is continued (``resume``), replaced
    (``overwrite``) or refused; it is locked while the run lasts. ``log``: where messages go (None: nowhere);
    ``progress``: progress bars / lines, ours and transformers' (default: only with the default ``log``, ``print``,
    so that ``train(recipe, log=lambda *_: None)`` is silent)."""
    progress = log is print if progress is None else progress
    log = log or (lambda *_: None)
    with contextlib.nullcontext() if progress else quiet():
        return _train(recipe, resume, overwrite, log)


def _train(recipe: Recipe, resume: bool, overwrite: bool, log) -> dict | None:
    run = RunDir.for_recipe(recipe)
    accelerator = make_accelerator(recipe, run)  # it knows which process is the main one; it writes nothing yet
    if accelerator.is_main_process:
        run.check_free(resume, overwrite)  # before any data is read
    splits = load_splits(recipe, log if accelerator.is_main_process else (lambda *_: None))  # bad data: no run dir
    with run.claim(resume, overwrite) if accelerator.is_main_process else contextlib.nullcontext():
        session = setup(recipe, run, accelerator, log, splits)
        if resume:
            restore(session)
        begin(session)
        fit(session)
        return finish(session)


# ---- fit --------------------------------------------------------------------------------------------------
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


class LossMeter:
    """The loss sum and the first non-finite step, kept on the device: the host reads them only at log,
    validation and checkpoint points (``--skip-nan`` excepted), so it never waits for the device between them."""

    def __init__(self, device, tasks: list[str]):
        self.device, self.tasks = device, tasks
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)
        self.reset()

    def reset(self) -> None:
        self.running, self.steps, self.tick = torch.zeros((), device=self.device), 0, time.time()
        self.task_sums = torch.zeros(len(self.tasks), device=self.device)  # loss of each task's micro-batches
        self.task_counts = [0] * len(self.tasks)

    def add_batch(self, task: int, loss: torch.Tensor) -> None:
        """One micro-batch's mean loss (of one task), for the per-task curves."""
        self.task_sums[task] += loss
        self.task_counts[task] += 1

    def add(self, loss_sum: torch.Tensor, finite: torch.Tensor, step: int) -> None:
        self.first_bad = torch.where((self.first_bad == 0) & ~finite, step, self.first_bad)
        self.running, self.steps = self.running + loss_sum, self.steps + 1

    def check_finite(self, s: Session) -> None:
        bad = s.accelerator.gather(self.first_bad.reshape(1))
        bad = bad[bad > 0]
        if bad.numel():
            raise TrainingError(f"the loss became nan or inf at step {int(bad.min())}; stopped without saving it. "
                                f"Last good checkpoint: {latest_checkpoint(s.run.checkpoints) or 'none'} (lower the "
                                "learning rates, or pass --skip-nan to skip such steps)")

    def log(self, s: Session) -> dict:
        """The mean loss and rate since the last log, into the history and the trackers; then start afresh."""
        rate = self.steps / (time.time() - self.tick)
        entry = {"step": s.step, "loss": s.accelerator.reduce(self.running, "mean").item() / self.steps,
                 "steps_per_s": rate, **{f"lr/{g['name']}": g["lr"] for g in s.optimizer.param_groups}}
        if len(self.tasks) > 1:  # this process's batches of each task (the processes share one order)
            sums = self.task_sums.tolist()
            entry.update({f"loss/{task}": total / n for task, total, n in zip(self.tasks, sums, self.task_counts) if n})
        s.history.append(entry)
        s.accelerator.log({k: v for k, v in entry.items() if k != "step"}, step=s.step)
        self.reset()
        return entry


def fit(s: Session) -> None:
    """Optimizer steps until ``s.total``: validation, checkpoints and the Ctrl-C check at their points."""
    cfg = s.cfg
    s.model.train()
    bar = progress(total=s.total, initial=s.step, desc=f"train {s.recipe.model.method}", unit="step",
                   disable=not s.main)
    meter = LossMeter(s.accelerator.device, s.recipe.tasks)
    prefetch = Prefetcher(lambda ms: make_batch(s.raw, s.splits["train"], s.images, s.order.batch(ms), cfg.seed, ms,
                                                device="cpu"), s.accelerator.device)
    with StopFlag() as stop, prefetch:
        while s.step < s.total:
            _optimizer_step(s, prefetch, meter)
            s.step += 1
            bar.update(1)
            validating = bool(cfg.eval_every and (s.step % cfg.eval_every == 0 or s.step == s.total)
                              and any(s.splits["eval"]))
            saving = s.step == s.total or bool(cfg.save_every and s.step % cfg.save_every == 0)
            logging = s.step % cfg.log_every == 0 or s.step == s.total
            stopping = _stop_requested(s, stop, logging or validating or saving)
            if logging or validating or saving or stopping:
                meter.check_finite(s)
            if meter.steps and logging:
                entry = meter.log(s)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{s.optimizer.param_groups[0]['lr']:.2g}")
            is_best = False
            if validating:
                prefetch.wait()  # the next batches are built: the tokenizer and the cache are free
                is_best = _track_validation(s)
            if is_best or stopping or saving:
                saved = save(s, is_best)
            if stopping:
                bar.close()
                raise TrainingInterrupted(f"{stop.signal or 'signal'} at step {s.step}/{s.total}: checkpoint saved "
                                          f"to {saved}; continue with the same command plus --resume")
    bar.close()


def _optimizer_step(s: Session, prefetch: Prefetcher, meter: LossMeter) -> None:
    """``grad_accum`` micro-steps, then the optimizer step (skipped under --skip-nan if the loss is not finite)."""
    cfg, accelerator = s.cfg, s.accelerator
    loss_sum = torch.zeros((), device=accelerator.device)
    for micro in range(cfg.grad_accum):
        micro_step = s.step * cfg.grad_accum + micro
        batch = prefetch.get(micro_step)
        sync = accelerator.no_sync(s.model) if micro < cfg.grad_accum - 1 else contextlib.nullcontext()
        with sync:
            loss = s.model(**batch).loss  # the mean over the batch's target tokens
            accelerator.backward(loss * _weight(s, batch) / cfg.grad_accum)
        loss_sum = loss_sum + loss.detach() / cfg.grad_accum
        meter.add_batch(s.order.batch(micro_step)[0][0], loss.detach())
    finite = torch.isfinite(loss_sum)
    if cfg.skip_nan and accelerator.reduce(finite.float(), "sum").item() < accelerator.num_processes:
        s.say(f"step {s.step + 1}: loss not finite, step skipped (--skip-nan)")
        s.history.append({"step": s.step + 1, "skipped_nan": True})
    else:
        meter.add(loss_sum, finite, s.step + 1)
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(s.params, cfg.max_grad_norm)
        s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.scheduler.step()


def _weight(s: Session, batch: dict):
    """1, or under multi-task token weighting the batch's target tokens over those of an average batch: a batch
    of long targets (captions) then counts for its tokens, not just as one batch."""
    if s.tokens_per_example is None:
        return 1.0
    labels = batch["labels"]
    return (labels != -100).sum() / (labels.shape[0] * s.tokens_per_example)  # on the device: no host sync


def _stop_requested(s: Session, stop: StopFlag, meeting: bool) -> bool:
    """Did SIGINT / SIGTERM arrive (in any process)? Several processes compare notes only where they meet anyway."""
    if s.accelerator.num_processes == 1:
        return stop.signal is not None
    if not meeting:
        return False
    flag = torch.tensor([float(stop.signal is not None)], device=s.accelerator.device)
    return bool(s.accelerator.reduce(flag, "sum").item())


def _track_validation(s: Session) -> bool:
    """Score the validation splits, log them, and say whether this is the best step so far."""
    scores, _ = validate(s, "eval", s.cfg.eval_examples)
    scores["score"] = _primary(s, scores)
    s.history.append({"step": s.step, **{f"val/{k}": v for k, v in scores.items()}})
    s.accelerator.log({f"val/{k}": v for k, v in scores.items() if not isinstance(v, str)}, step=s.step)
    is_best = s.best is None or scores["score"] > s.best["score"]
    if is_best:
        s.best = {"step": s.step, **scores}
    s.say(f"step {s.step}: validation {scores['score']:.4f} (best {s.best['score']:.4f} at step {s.best['step']})")
    return is_best


def validate(s: Session, role: str, limit: int) -> tuple[dict, list]:
    """Scores of every task's ``role`` split (keys prefixed by task when there are several) and, per task,
    (split, examples, predictions)."""
    scores, outputs = {}, []
    for t, split in enumerate(s.splits[role]):
        if split is not None:
            result, predictions = evaluate_split(s.raw, split, s.images, t,
                                                 Decoding(s.cfg.eval_batch_size, s.cfg.num_beams, desc=role),
                                                 limit=limit, accelerator=s.accelerator)
            scores.update({_key(s, split, k): v for k, v in result.items()})
            outputs.append((split, split.data.examples[: limit or None], predictions))
    return scores, outputs


def save(s: Session, is_best: bool = False) -> Path:
    """A resumable checkpoint of this step (written by the main process; every process waits for it)."""
    state = {"step": s.step, "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
             "rng": rng_state(), "history": s.history, "best": s.best}
    path = s.run.checkpoints / f"step-{s.step:06d}"
    if s.main:
        with _resumable(s):
            path = save_checkpoint(s.run.checkpoints, s.step, s.raw, state, s.cfg.keep_checkpoints, is_best,
                                   {RECIPE_FILE: s.recipe.to_yaml()})
    s.accelerator.wait_for_everyone()
    return path


@contextlib.contextmanager
def _resumable(s: Session):
    """A full disk while the run writes: one line naming the file, its file system and the last good checkpoint,
    which stays intact, to resume from once there is space."""
    try:
        yield
    except DiskFullError as err:
        last = latest_checkpoint(s.run.checkpoints)
        raise TrainingError(f"{err.message}; the last good checkpoint is {last or 'none yet'}: free space and rerun "
                            "the same command with --resume") from None


# ---- finish -------------------------------------------------------------------------------------------------
def finish(s: Session) -> dict | None:
    """The best (or last) weights into ``model/``, the test splits scored, metrics, predictions and curves."""
    best_dir = best_checkpoint(s.run.checkpoints) if s.best else None
    if best_dir is not None and s.best["step"] != s.step:
        s.raw.load_trainable(best_dir)
    if s.main:
        with _resumable(s):
            s.run.save_model(s.raw.save_pretrained, s.recipe.to_yaml())
    metrics = {"train": {"steps": s.step, "method": s.recipe.model.method,
                         "trainable_params": sum(p.numel() for p in s.params),
                         "processes": s.accelerator.num_processes,
                         "final_loss": next((h["loss"] for h in reversed(s.history) if "loss" in h), None)}}
    if s.best:
        metrics["val"] = dict(s.best)
    test_scores, outputs = validate(s, "test", s.cfg.test_examples)
    for split, examples, predictions in outputs if s.main else []:
        write_predictions(s.run.predictions(split.task.name, split.data.split), examples, predictions)
    if test_scores:
        metrics["test"] = test_scores
    if s.raw.fast_path is not None:
        metrics["train"]["compile"] = s.raw.fast_path.stats()
    metrics["train"]["weights_agree_across_processes"] = _weights_agree(s.accelerator, s.params)
    metrics["train"]["seconds"] = round(time.time() - s.started, 1)
    if s.main:
        s.run.save_metrics(metrics)
        plot_curves(s.history, s.run.curves, ["val/score"] + [f"val/{_key(s, split, split.task.metric)}" for split in
                                                               s.splits["eval"] if split is not None and
                                                               len(s.recipe.tasks) > 1])
        s.say(f"run saved in {s.run.root}" + (f": test {_summary(s, test_scores)}" if test_scores else ""))
    s.accelerator.wait_for_everyone()  # end_training destroys the process group: no process may leave early
    s.accelerator.end_training()
    _release_accelerator_state()
    return metrics if s.main else None


def _key(s: Session, split: TaskSplit, metric: str) -> str:
    return metric if len(s.recipe.tasks) == 1 else f"{split.task.name}/{metric}"


def _summary(s: Session, scores: dict) -> str:
    """Each task's own metric, e.g. ``accuracy 0.9874`` or ``vqa/accuracy 0.55, caption/CIDEr 1.02``."""
    keys = [_key(s, split, split.task.metric) for split in s.splits["test"] if split is not None]
    return ", ".join(f"{key} {scores[key]:.4f}" for key in keys if key in scores)


def _primary(s: Session, scores: dict) -> float:
    """The number the best checkpoint is chosen by: each task's own metric, averaged over tasks."""
    values = [scores[_key(s, split, split.task.metric)] for split in s.splits["eval"] if split is not None]
    return sum(values) / len(values)


def _weights_agree(accelerator, params) -> bool:
    """All processes hold the same trainable weights (a DDP sanity check)."""
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1).to(accelerator.device)
    gathered = accelerator.gather(checksum)
    return bool(torch.all(gathered == gathered[0]).item())


def _release_accelerator_state() -> None:
    """Forget this run's accelerate settings (mixed precision, ...) so that a later ``train`` in the same process
    (a benchmark, a notebook) may use others."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
