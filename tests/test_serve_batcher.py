"""Dynamic batching: requests of one window are answered by one call; errors stay with their item."""

import asyncio
import threading

from dept_vl.serve.batcher import DynamicBatcher


def run(coroutine):
    return asyncio.run(coroutine)


def test_requests_of_one_window_are_answered_together_on_one_thread():
    calls, threads = [], set()

    def answer(items):
        calls.append(list(items))
        threads.add(threading.get_ident())
        return [f"answer {i}" for i in items]

    async def main():
        batcher = DynamicBatcher(answer, max_batch_size=4, max_wait_ms=50)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return answers, batcher

    answers, batcher = run(main())
    assert answers == [f"answer {i}" for i in range(10)]  # each gets its own answer, in any batch
    assert [len(c) for c in calls] == [4, 4, 2] and sorted(sum(calls, [])) == list(range(10))
    assert len(threads) == 1 and threading.get_ident() not in threads  # one worker thread owns the model
    assert (batcher.batches, batcher.items, batcher.mean_batch_size) == (3, 10, 10 / 3)


def test_a_lone_request_waits_no_longer_than_the_window_and_errors_stay_with_their_item():
    def answer(items):
        return [ValueError(f"bad {i}") if i == "bad" else i.upper() for i in items]

    async def main():
        batcher = DynamicBatcher(answer, max_batch_size=8, max_wait_ms=20)
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        alone = await batcher.submit("a")
        waited = loop.time() - started
        results = await asyncio.gather(batcher.submit("x"), batcher.submit("bad"), return_exceptions=True)
        await batcher.stop()
        return alone, waited, results

    alone, waited, results = run(main())
    assert alone == "A" and waited < 1.0
    assert results[0] == "X" and isinstance(results[1], ValueError) and str(results[1]) == "bad bad"


def test_on_idle_runs_once_per_quiet_spell_on_the_model_thread():
    idle_threads, answer_threads = [], []

    def answer(items):
        answer_threads.append(threading.get_ident())
        return list(items)

    async def main():
        batcher = DynamicBatcher(answer, max_wait_ms=1, on_idle=lambda: idle_threads.append(threading.get_ident()),
                                 idle_s=0.05)
        batcher.start()
        await batcher.submit(1)
        await asyncio.sleep(0.3)  # one quiet spell: on_idle once, however long it lasts
        quiet_once = len(idle_threads)
        await batcher.submit(2)
        await asyncio.sleep(0.3)
        await batcher.stop()
        return quiet_once

    assert run(main()) == 1
    assert len(idle_threads) == 2 and set(idle_threads) == set(answer_threads)  # the model's thread, not another
