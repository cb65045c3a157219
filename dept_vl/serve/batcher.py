"""Dynamic batching: the requests that arrive within ``max_wait_ms`` of the first one (at most ``max_batch_size``)
are answered by one batched call, made on a single worker thread that owns the model."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence


class DynamicBatcher:
    """``await submit(item)`` gives ``answer([..., item, ...])``'s answer to it, answered together with the items
    that came in the same window (an Exception in ``answer``'s list is raised for that item alone). ``on_idle``, when
    given, runs on the worker once each time no request has come for ``idle_s`` seconds. Start it with ``start()``
    inside the event loop; ``stop()`` answers what is queued, then ends the worker."""

    def __init__(self, answer: Callable[[Sequence[Any]], list], max_batch_size: int = 32, max_wait_ms: float = 10,
                 on_idle: Callable[[], None] | None = None, idle_s: float = 0.5):
        self.answer, self.max_batch_size, self.max_wait = answer, max_batch_size, max_wait_ms / 1000
        self.on_idle, self.idle_s = on_idle, idle_s
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dept-vl-model")
        self.batches = self.items = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: Any):
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _first(self):
        """The next request; if none is waiting and none comes within ``idle_s``, ``on_idle`` runs first (once)."""
        if self.on_idle is None or not self._queue.empty():
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), self.idle_s)
        except asyncio.TimeoutError:
            await asyncio.get_running_loop().run_in_executor(self.worker, self.on_idle)
            return await self._queue.get()

    async def _collect(self) -> list:
        """The first waiting request, and those that arrive within the window after it."""
        batch = [await self._first()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch_size:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:  # the window is over: take only what is already waiting
                if self._queue.empty():
                    break
                batch.append(self._queue.get_nowait())
                continue
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(item, future) for item, future in await self._collect() if not future.cancelled()]
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(self.worker, self.answer, [item for item, _ in batch])
            except Exception as err:  # noqa: BLE001 - each waiting request gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            for (_, future), answer in zip(batch, answers):
                if future.done():
                    continue
                if isinstance(answer, Exception):  # that item's own error; the others were answered
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def stop(self) -> None:
        """Answer what is queued, then end the worker."""
        while self._queue is not None and not self._queue.empty():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.worker.shutdown(wait=True)
