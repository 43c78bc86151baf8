"""The micro-batcher: texts of concurrent requests gathered into one model call.

Hand-written because no ASGI library batches across requests by a token budget; everything else in the
server is Starlette's, uvicorn's or prometheus-client's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .metrics import ServerMetrics

Run = Callable[[list[Any]], Sequence[Any]]  # texts (or pairs of texts) in, one result each out


@dataclass(frozen=True)
class BatchLimits:
    """When a batch is complete: `max_tokens` bucketed tokens, `max_size` texts, or the oldest text waited
    `max_wait` seconds."""

    max_tokens: int
    max_size: int
    max_wait: float


@dataclass(eq=False)
class _Job:
    """One request's texts: `run` computes any batch of texts submitted under the same `key`."""

    key: Hashable
    run: Run
    texts: list[Any]
    costs: list[int]
    future: asyncio.Future[list[Any]]
    arrived: float
    deadline: float  # when its batch runs, whether full or not
    next: int = 0  # the first text not yet in a batch
    results: list[Any] = field(init=False)
    missing: int = field(init=False)  # results not yet computed

    def __post_init__(self) -> None:
        self.results = [None] * len(self.texts)
        self.missing = len(self.texts)


class MicroBatcher:
    """Gathers the texts of concurrent requests into batches and runs up to `concurrent` batches at once,
    each in a worker thread (ONNX Runtime releases the GIL, so the event loop keeps serving meanwhile, and
    concurrent runs share the session and its intra-op threads).

    A batch takes texts round-robin from the waiting requests with the oldest request's `key` (requests
    with other options wait for a batch of their own), one text per request per turn, so a request with many
    texts is spread over several batches and a short request that comes later joins the next one. When
    other batch slots are idle too, a batch takes only its share of the waiting texts, so that the next
    slots start at once with the rest instead of one batch holding every text while the others' cores idle
    (benchmarks/README.md, "Figures behind the defaults"). Each
    request gets exactly its own results, in order; when a batch fails, each of its requests runs again alone,
    so only the one whose texts fail gets the error. A cancelled request's texts that have not started are
    dropped.
    """

    def __init__(self, limits: BatchLimits, metrics: ServerMetrics, concurrent: int = 1) -> None:
        self.limits = limits
        self.metrics = metrics
        self.concurrent = concurrent
        self._jobs: list[_Job] = []
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="mbert-edge-model")
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Stop after the batches in progress; the server calls this once no request is in flight."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, run: Run, texts: list[Any], costs: list[int], wait: bool = True) -> list[Any]:
        """The results of `run` for `texts` (whose token costs are `costs`), computed in shared batches; with
        `wait` False their batch runs at once rather than waiting up to `max_wait` for batch-mates."""
        now = time.perf_counter()
        deadline = now + self.limits.max_wait if wait else now
        job = _Job(key, run, texts, costs, asyncio.get_running_loop().create_future(), now, deadline)
        self._jobs.append(job)
        self.metrics.queue_depth.inc(len(texts))
        self._arrived.set()
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()  # the request was cancelled (its client left): _take drops the rest

    async def _serve(self) -> None:
        """Whenever fewer than `concurrent` batches run: the next batch, once it is complete."""
        free = asyncio.Semaphore(self.concurrent)
        while True:
            await free.acquire()
            await self._wait_for_batch()
            batch = self._take(share=self.concurrent - len(self._running))  # this slot and the other idle ones
            if not batch:
                free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: free.release())

    async def _run(self, batch: list[tuple[_Job, int]]) -> None:
        """One batch through the model; each result to its request, each request answered once complete."""
        run = batch[0][0].run
        texts = [job.texts[i] for job, i in batch]
        started = time.perf_counter()
        for job, _ in batch:
            self.metrics.queue_seconds.observe(started - job.arrived)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(sum(job.costs[i] for job, i in batch))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, run, texts)
        except Exception as exc:
            self.metrics.inference_seconds.observe(time.perf_counter() - started)
            jobs = list(dict.fromkeys(job for job, _ in batch))
            if len(jobs) > 1:  # one request's bad text must not fail the others: each runs again on its own
                for job in jobs:
                    await self._run([(j, index) for j, index in batch if j is job])
            elif not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        for (job, index), output in zip(batch, outputs):
            job.results[index] = output
            job.missing -= 1
            if job.missing == 0 and not job.future.done():
                job.future.set_result(job.results)

    async def _wait_for_batch(self) -> None:
        """Until a batch is full or the oldest waiting text's deadline (`max_wait` after it arrived) has come."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        while True:
            self._drop_cancelled()
            if not self._jobs:
                return
            oldest = self._jobs[0]
            waiting = [job for job in self._jobs if job.key == oldest.key]
            sizes = [len(job.texts) - job.next for job in waiting]
            tokens = sum(sum(job.costs[job.next :]) for job in waiting)
            remaining = oldest.deadline - time.perf_counter()
            if sum(sizes) >= self.limits.max_size or tokens >= self.limits.max_tokens or remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _drop_cancelled(self) -> None:
        for job in [job for job in self._jobs if job.future.done()]:
            left = len(job.texts) - job.next
            self.metrics.queue_depth.dec(left)
            self.metrics.cancelled_texts.inc(left)
            self._jobs.remove(job)

    def _take(self, share: int) -> list[tuple[_Job, int]]:
        """Texts round-robin from the waiting jobs with the oldest job's key, within the limits and at most
        1/`share` of those waiting (rounded up)."""
        self._drop_cancelled()
        if not self._jobs:
            return []
        key = self._jobs[0].key
        waiting = sum(len(job.texts) - job.next for job in self._jobs if job.key == key)
        size = min(self.limits.max_size, -(-waiting // share))
        batch: list[tuple[_Job, int]] = []
        tokens = 0
        taking = True
        while taking:
            taking = False
            for job in (job for job in self._jobs if job.key == key and job.next < len(job.texts)):
                cost = job.costs[job.next]
                if len(batch) == size or (batch and tokens + cost > self.limits.max_tokens):
                    break
                batch.append((job, job.next))
                job.next += 1
                tokens += cost
                taking = True
        self._jobs = [job for job in self._jobs if job.next < len(job.texts)]
        self.metrics.queue_depth.dec(len(batch))
        return batch
