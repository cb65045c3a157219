"""Training data: a deterministic, resumable batch order and the step from examples to model inputs.

The order is a pure function of (seed, step): epoch e shuffles each task's examples with seed (seed, e), cuts
them into global batches (one task per batch), and shuffles the batches. Process ``rank`` of ``world`` takes
every world-th example of a global batch. So a run resumed at step k sees exactly the batches an uninterrupted
run would, on any number of processes. Because a batch depends on nothing but its step, ``Prefetcher`` builds
the next ones in a background thread while the current step computes.
"""

from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .feature_cache import FeatureCache
from .tasks import Example, Task, TaskData


@dataclass
class TaskSplit:
    """A loaded split of one task, with the image store its examples refer to."""

    task: Task
    data: TaskData


class BatchOrder:
    """Which examples make up micro-step ``step``: ``batch(step) -> [(task index, example index), ...]``.

    ``temperature`` sets each task's share of the batches in a multi-task run: proportional to its examples to the
    power 1 / temperature. 1 (the default): proportional to its size, every example once per epoch; larger: more
    even (``inf``: equal shares), so that a small task is not starved by a large one.
    """

    def __init__(self, sizes: Sequence[int], global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 temperature: float = 1.0):
        if any(n < world for n in sizes):
            raise ValueError(f"every task needs at least {world} training examples")
        self.sizes, self.global_batch, self.seed, self.rank, self.world = list(sizes), global_batch, seed, rank, world
        self._epoch, self._batches = -1, []
        self.per_task = [-(-n // global_batch) for n in self.sizes]  # batches in one pass over a task
        self.steps_per_epoch = sum(self.per_task)
        self.shares = self.per_task if temperature == 1 else _shares(self.sizes, temperature, self.steps_per_epoch)
        self._round, self._tasks = -1, []

    def _epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        if epoch != self._epoch:
            batches = []
            for t in range(len(self.sizes)):
                batches += self._task_batches(t, epoch)
            random.Random(f"{self.seed}-{epoch}").shuffle(batches)
            self._epoch, self._batches = epoch, batches
        return self._batches

    def _task_batches(self, t: int, epoch: int) -> list[list[tuple[int, int]]]:
        """One pass over task ``t``'s examples, shuffled for (seed, epoch), cut into global batches."""
        order = list(range(self.sizes[t]))
        random.Random(f"{self.seed}-{epoch}-{t}").shuffle(order)
        return [[(t, i) for i in order[s : s + self.global_batch]] for s in range(0, len(order), self.global_batch)]

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self.shares == self.per_task:  # proportional: one shuffled pass over every task per epoch
            return self._epoch_batches(epoch)[position][self.rank :: self.world]
        tasks = self._round_tasks(epoch)  # a round of steps_per_epoch steps, each task its share, shuffled
        t = tasks[position]
        j = epoch * self.shares[t] + tasks[:position].count(t)  # task t's j-th batch of the run
        return self._task_batches(t, j // self.per_task[t])[j % self.per_task[t]][self.rank :: self.world]

    def _round_tasks(self, round_: int) -> list[int]:
        if round_ != self._round:
            tasks = [t for t, share in enumerate(self.shares) for _ in range(share)]
            random.Random(f"{self.seed}-round-{round_}").shuffle(tasks)
            self._round, self._tasks = round_, tasks
        return self._tasks


def _shares(sizes: Sequence[int], temperature: float, steps: int) -> list[int]:
    """Batches of each task in ``steps``: proportional to size ** (1 / temperature), at least one each, summing to
    ``steps`` (largest remainders)."""
    weights = [n ** (1.0 / temperature) if temperature != float("inf") else 1.0 for n in sizes]
    exact = [steps * w / sum(weights) for w in weights]
    shares = [max(1, int(x)) for x in exact]
    for t in sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True):
        if sum(shares) >= steps:
            break
        shares[t] += 1
    while sum(shares) > steps:  # only where the minimum of one batch each pushed the sum over
        shares[shares.index(max(shares))] -= 1
    return shares


class ImageInputs:
    """Turns examples' image ids into model inputs: cached features (one cache per task, or None), or the
    image files / PIL images of the split for the vision encoder."""

    def __init__(self, caches: Sequence[FeatureCache | None]):
        self.caches = list(caches)

    def inputs(self, task_index: int, data: TaskData, examples: Sequence[Example]) -> dict[str, Any]:
        ids = [list(ex.image_ids) for ex in examples]
        cache = self.caches[task_index] if task_index < len(self.caches) else None
        if cache is not None:
            flat = cache.get([i for row in ids for i in row])
            return {"image_features": flat.unflatten(0, (len(ids), len(ids[0])))}
        return {"images": [[data.images[i] for i in row] for row in ids]}


def make_batch(model, splits: Sequence[TaskSplit], images: ImageInputs, items: Sequence[tuple[int, int]],
               seed: int, step: int, device=None) -> dict[str, torch.Tensor]:
    """Model inputs (and sampled targets) for one micro-batch, on ``device`` (default: the model's); target
    sampling is seeded by (seed, step, item)."""
    task_index = items[0][0]
    split = splits[task_index]
    examples = [split.data.examples[i] for _, i in items]
    targets = [split.task.training_target(ex, random.Random(f"{seed}-{step}-{i}")) for ex, (_, i) in
               zip(examples, items)]
    return model.prepare([ex.source for ex in examples], targets=targets, device=device, task=split.task.name,
                         **images.inputs(task_index, split.data, examples), **contexts_of(examples))


def contexts_of(examples: Sequence[Example]) -> dict:
    """``{"contexts": [...]}`` when some example carries earlier turns of a conversation (own data), else {}."""
    if not any(ex.meta.get("context") for ex in examples):
        return {}
    return {"contexts": [ex.meta.get("context") or [] for ex in examples]}


class Prefetcher:
    """``get(step)`` returns ``build(step)`` on ``device``, having built it (and the next ``depth - 1``) in a
    background thread during the steps before: tokenising, reading cached features or decoding images overlaps
    with the model's compute. On CUDA the batches are pinned and copied without blocking the host.
    ``build`` must depend on nothing but the step (``make_batch`` does). Steps are asked for in order."""

    def __init__(self, build: Callable[[int], dict[str, torch.Tensor]], device, depth: int = 2):
        self.build, self.device, self.depth = build, torch.device(device), max(1, depth)
        self.pin = self.device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dept-vl-prefetch")
        self._pending: dict[int, Future] = {}

    def _host_batch(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.build(step)
        return _tensors(batch, torch.Tensor.pin_memory) if self.pin else batch

    def get(self, step: int) -> dict[str, torch.Tensor]:
        for ahead in range(step, step + self.depth):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self._host_batch, ahead)
        batch = self._pending.pop(step).result()  # an error building the batch is raised here
        return _tensors(batch, lambda tensor: tensor.to(self.device, non_blocking=self.pin))

    def wait(self) -> None:
        """Let the batches in flight finish (before something else uses the tokenizer or the cache)."""
        for future in self._pending.values():
            future.exception()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tensors(batch: dict, move: Callable) -> dict:
    """``move(tensor)`` for each tensor of ``batch``; other values (a batch's prompt index) pass as they are."""
    return {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def k_shot(data: TaskData, k: int, seed: int) -> TaskData:
    """``k`` examples of ``data`` drawn with ``seed`` (the few-shot setting)."""
    if not k or k >= len(data.examples):
        return data
    chosen = sorted(random.Random(f"k-shot-{seed}").sample(range(len(data.examples)), k))
    return TaskData(data.task, data.split, [data.examples[i] for i in chosen], data.images)
