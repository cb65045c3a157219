"""Training data: the batch order is a pure function of the step; the prefetcher builds ahead, in order."""

import threading

import pytest
import torch

from dept_vl.data.batches import BatchOrder, Prefetcher


def test_batch_order_is_a_function_of_the_step_and_splits_across_processes():
    order = BatchOrder([10, 7], global_batch=4, seed=3)
    assert order.steps_per_epoch == 3 + 2
    epoch = [order.batch(s) for s in range(order.steps_per_epoch)]
    assert all(len({t for t, _ in b}) == 1 for b in epoch)  # one task per batch
    assert sorted(i for b in epoch for t, i in b if t == 0) == list(range(10))
    assert [order.batch(s) for s in range(order.steps_per_epoch)] == epoch  # asked again: the same
    assert BatchOrder([10, 7], 4, seed=3).batch(6) == order.batch(6) != epoch[1]  # a fresh object, epoch 2
    ranks = [BatchOrder([10, 7], 4, seed=3, rank=r, world=2).batch(2) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == sorted(epoch[2])
    with pytest.raises(ValueError, match="at least 2"):
        BatchOrder([1], 4, seed=0, world=2)


def test_prefetcher_returns_each_step_built_ahead_in_the_background():
    built, main = [], threading.get_ident()

    def build(step):
        built.append((step, threading.get_ident() != main))
        return {"x": torch.full((2,), step)}

    with Prefetcher(build, "cpu", depth=3) as prefetch:
        first = prefetch.get(5)  # a resumed run starts anywhere
        assert torch.equal(first["x"], torch.tensor([5, 5]))
        prefetch.wait()
        assert sorted(s for s, _ in built) == [5, 6, 7]  # two more built before they are asked for
        assert [int(prefetch.get(s)["x"][0]) for s in (6, 7, 8)] == [6, 7, 8]
    assert all(in_thread for _, in_thread in built)


def test_prefetcher_raises_the_build_error_at_its_step():
    def build(step):
        if step == 1:
            raise ValueError("bad line 1")
        return {"x": torch.zeros(1)}

    with Prefetcher(build, "cpu") as prefetch:
        assert prefetch.get(0)["x"].shape == (1,)
        with pytest.raises(ValueError, match="bad line 1"):
            prefetch.get(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetcher_pins_and_copies_to_cuda():
    with Prefetcher(lambda s: {"x": torch.ones(4)}, "cuda") as prefetch:
        assert prefetch.pin and prefetch.get(0)["x"].is_cuda


def test_task_temperature_evens_out_the_tasks_shares():
    from collections import Counter

    sizes = [400, 40]
    proportional = BatchOrder(sizes, 8, seed=0)
    assert proportional.shares == [50, 5] and proportional.steps_per_epoch == 55
    even = BatchOrder(sizes, 8, seed=0, temperature=float("inf"))
    assert even.shares == [28, 27]
    steps = [even.batch(s) for s in range(3 * even.steps_per_epoch)]
    assert Counter(b[0][0] for b in steps) == {0: 84, 1: 81}
    small = [i for b in steps for t, i in b if t == 1]  # the small task cycles through all its examples
    assert sorted(set(small)) == list(range(40)) and Counter(small).most_common(1)[0][1] <= 17
    assert [BatchOrder(sizes, 8, seed=0, temperature=float("inf")).batch(s) for s in (7, 60)] == \
        [even.batch(7), even.batch(60)]  # a pure function of (seed, step): a resumed run sees the same
    sqrt = BatchOrder(sizes, 8, seed=0, temperature=2.0)
    assert sqrt.shares == [42, 13]
    with pytest.raises(ValueError, match="at least 2"):
        BatchOrder([1, 5], 4, seed=0, world=2, temperature=2.0)
