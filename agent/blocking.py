"""Blocking host calls off the event loop, with hard deadlines and "stuck" bookkeeping.

A stat() on a hung NFS server or a FUSE daemon that never answers blocks its thread in the
kernel for good; Python cannot cancel it. So every such call runs on a small pool of daemon
threads under a deadline, keyed by what it touches (a mount path). A call that misses its
deadline leaves its key *blocked*: no second call is started on that key while the first
is still in the kernel, so a dead mount costs exactly one thread, not one per cycle. When
the call finally returns, the key is free again and the next call goes through.

Threads are daemon threads on purpose: concurrent.futures' pool joins its workers at
interpreter exit, which would turn a hung NAS into an agent that cannot shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

__all__ = ["BlockingExecutor", "DeadlineExceeded", "KeyBusy", "PoolExhausted"]

T = TypeVar("T")

JobState = Literal["queued", "running", "done", "abandoned"]


class DeadlineExceeded(Exception):
    """The call is still running after its deadline; its key stays busy until it returns."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(f"{key}: no answer within {timeout:g}s")
        self.key = key
        self.timeout = timeout


class KeyBusy(Exception):
    """An earlier call on this key has not returned yet; nothing was started."""

    def __init__(self, key: str, started_at: float) -> None:
        super().__init__(f"{key}: earlier call still blocked")
        self.key = key
        self.started_at = started_at  # time.monotonic() when the blocked call started


class PoolExhausted(Exception):
    """Every worker is busy; the call never started and was dropped."""


@dataclass
class _Job(Generic[T]):
    key: str
    fn: Callable[[], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    state: JobState = "queued"
    started_at: float = 0.0


class BlockingExecutor:
    """At most `max_workers` daemon threads; at most one outstanding call per key."""

    def __init__(self, max_workers: int, name: str = "preflight-blocking") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._pending = 0  # queued, not yet picked up by a worker
        self._inflight: dict[str, _Job[Any]] = {}
        self._closed = False
        self._serial = itertools.count()

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def ensure_workers(self, count: int) -> None:
        """Raises the worker ceiling to `count` (never lowers it: stuck workers stay)."""
        with self._lock:
            self._max_workers = max(self._max_workers, count)

    def threads_alive(self) -> int:
        """Worker threads that exist now (busy, blocked or idle)."""
        with self._lock:
            return sum(1 for t in self._threads if t.is_alive())

    def busy_keys(self) -> dict[str, float]:
        """Keys with an outstanding call -> seconds since that call started running."""
        now = time.monotonic()
        with self._lock:
            return {
                k: (now - j.started_at if j.state == "running" else 0.0)
                for k, j in self._inflight.items()
            }

    def busy_since(self, key: str) -> float | None:
        """time.monotonic() at which the outstanding call on `key` started, if any."""
        with self._lock:
            job = self._inflight.get(key)
            return None if job is None else job.started_at

    async def run(self, key: str, fn: Callable[[], T], timeout: float) -> T:
        """fn() on a worker thread, waiting at most `timeout` seconds.

        Raises KeyBusy (nothing started) when an earlier call on `key` is outstanding,
        DeadlineExceeded when fn is still running at the deadline (the key stays busy until
        it returns), PoolExhausted when no worker picked the call up in time, and whatever
        fn raised otherwise.
        """
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(key=key, fn=fn, loop=loop, future=loop.create_future())
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            busy = self._inflight.get(key)
            if busy is not None:
                raise KeyBusy(key, busy.started_at)
            self._inflight[key] = job
            self._pending += 1
            if self._pending > self._idle and len(self._threads) < self._max_workers:
                self._spawn_locked()
        # A call that outlives its deadline may still fail later: mark that retrieved.
        job.future.add_done_callback(_consume)
        self._queue.put(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), max(timeout, 0.0))
        except TimeoutError:
            with self._lock:
                state = job.state
                if state == "queued":
                    job.state = "abandoned"
                    self._pending -= 1
                    if self._inflight.get(key) is job:
                        del self._inflight[key]
            if state == "queued":
                raise PoolExhausted(f"{key}: no free worker within {timeout:g}s") from None
            if state == "done":
                # Finished between the deadline and the lock: the result is on its way.
                return await job.future
            raise DeadlineExceeded(key, timeout) from None

    def shutdown(self) -> None:
        """Let idle workers exit; blocked ones stay blocked (daemon threads, never joined)."""
        with self._lock:
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._queue.put(None)

    def _spawn_locked(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(
            target=self._worker, name=f"{self._name}-{next(self._serial)}", daemon=True
        )
        self._threads.append(thread)
        self._idle += 1
        thread.start()

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                with self._lock:
                    self._idle -= 1
                return
            with self._lock:
                if job.state == "abandoned":
                    continue
                self._pending -= 1
                job.state = "running"
                job.started_at = time.monotonic()
                self._idle -= 1
            outcome: tuple[bool, Any]
            try:
                outcome = (True, job.fn())
            except BaseException as exc:
                outcome = (False, exc)
            with self._lock:
                job.state = "done"
                self._idle += 1
                if self._inflight.get(job.key) is job:
                    del self._inflight[job.key]
            # The loop may be gone (agent shut down while this call was blocked).
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(_settle, job.future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
