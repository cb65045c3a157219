"""How long a run trains: ``--max-steps`` optimizer steps, or ``--epochs`` passes over the training examples; and a
warning when the steps asked for mean many dozens of passes over a small set."""

from __future__ import annotations

import math

from ..data.batches import BatchOrder
from ..runs.recipe import TrainConfig

MANY_PASSES = 50  # more passes than this over the training set: say so (a small set overfits, and the time is long)


def total_steps(cfg: TrainConfig, order: BatchOrder, say) -> int:
    """Optimizer steps of the run: ``cfg.max_steps``, else ``cfg.epochs`` passes (rounded up); ``say`` a one-line
    warning when that is more than MANY_PASSES passes over the examples."""
    if not cfg.max_steps:
        return math.ceil(cfg.epochs * order.steps_per_epoch / cfg.grad_accum)
    passes = cfg.max_steps * cfg.grad_accum / order.steps_per_epoch
    if passes > MANY_PASSES:
        say(f"warning: {cfg.max_steps:,} steps of batch {order.global_batch * cfg.grad_accum} are {passes:,.0f} passes "
            f"over {sum(order.sizes):,} training examples; --epochs N trains N passes (or lower --max-steps)")
    return cfg.max_steps
