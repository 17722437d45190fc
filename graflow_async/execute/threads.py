"""The thread pool plain (sync) task functions run in, one per executor.

`RunThreadPool.call(loop, fn)` runs ``fn()`` in a pool thread and returns an asyncio
future of its result; `call_then(loop, fn, done, arg)` instead calls
``done(arg, result, error)`` on the loop once it returns. That is the path of every
sync task, and it is cheaper than
``loop.run_in_executor`` on a `ThreadPoolExecutor`: no `concurrent.futures.Future`
(with its condition variable and lock) chained to an asyncio future by two callbacks,
no work-item object, no semaphore; the thread hands the result straight back with one
``call_soon_threadsafe``. `submit` is still there, so the pool is a
`concurrent.futures.Executor` that ``run_in_executor`` accepts.

Threads start on demand, up to `max_workers` (default: `ThreadPoolExecutor`'s,
``min(32, CPUs + 4)``), and are daemon threads: the run that owns the pool waits for
them (`shutdown`); a worker past its grace period does not.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from graflow_async.define.tasks import _is_async
from graflow_async.options import whole

# (function, what to call on `loop` with (arg, result, error) once it returned, arg, loop);
# `loop` None: a `submit`, arg its concurrent future
_Job = tuple[Callable[[], Any], Any, Any, "asyncio.AbstractEventLoop | None"]


#: the error a `call_then` callback gets for a job that shutdown dropped before it ran
DROPPED = asyncio.CancelledError("dropped: the thread pool shut down before the job ran")


def default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    elif error is DROPPED:
        future.cancel()
    else:
        future.set_exception(error)


class RunThreadPool(Executor):
    """Threads for a run's plain functions; `used` says whether it ever started one."""

    _counter = itertools.count()

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "graflow-task") -> None:
        self.max_workers = (
            default_max_workers() if max_workers is None else whole("max_workers", max_workers, minimum=1)
        )
        self.used = False
        self._prefix = f"{thread_name_prefix}-{next(self._counter)}"
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads that will take the next job without a new one starting
        self._lock = threading.Lock()
        self._closed = False

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in a pool thread; the returned future (of `loop`) gets its outcome.
        Cancelling the future before a thread takes the job means it never runs."""
        future = loop.create_future()
        self._put((fn, _settle, future, loop))
        return future

    def call_then(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[[], Any],
        done: Callable[[Any, Any, BaseException | None], None],
        arg: Any,
    ) -> None:
        """Run ``fn()`` in a pool thread, then ``done(arg, result, error)`` on `loop`
        (`error` is `DROPPED` when shutdown dropped the job before it ran)."""
        self._put((fn, done, arg, loop))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._put(((lambda: fn(*args, **kwargs)) if args or kwargs else fn, None, future, None))
        return future

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run a task in a thread pool that has shut down")
            self.used = True
            self._jobs.put(job)
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, done, arg, loop = job
            del job
            if loop is None:
                _run_submitted(fn, arg)
            elif done is not _settle or not arg.cancelled():
                try:
                    result, error = fn(), None
                except BaseException as exc:
                    result, error = None, exc
                try:
                    loop.call_soon_threadsafe(done, arg, result, error)
                except RuntimeError:  # the loop has closed: nobody waits for it any more
                    pass
                del result, error
            del fn, done, arg, loop
            with lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more jobs; with `cancel_futures`, drop those no thread has taken yet
        (their futures are cancelled); with `wait`, wait for the threads to finish."""
        with self._lock:
            first = not self._closed
            self._closed = True
        if cancel_futures:
            self._drop_queued()
        if first:
            for _ in self._threads:
                self._jobs.put(None)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _drop_queued(self) -> None:
        kept = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                kept += 1  # another shutdown's stop signal: put it back below
                continue
            _, done, arg, loop = job
            if loop is None:
                arg.cancel()
            else:
                try:
                    loop.call_soon_threadsafe(done, arg, None, DROPPED)
                except RuntimeError:
                    pass
        for _ in range(kept):
            self._jobs.put(None)


def _run_submitted(fn: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def shutdown(pool: RunThreadPool, *, wait: bool = True) -> None:
    """Drop queued thread jobs and wait, off the loop, for running ones to return.

    A running Python function cannot be interrupted; a cancelled run waits for its
    threads (even through repeated cancellation, which it re-raises afterwards) so
    that nothing of it is left running. With ``wait=False`` (a worker past its grace
    period) they are left to finish on their own.
    """
    pool.shutdown(wait=False, cancel_futures=True)
    if not pool.used or not wait:
        return
    joined = asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
    cancelled: asyncio.CancelledError | None = None
    while not joined.done():
        try:
            await asyncio.shield(joined)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled


# The thread pool that plain (sync) task functions run in; the executor of each run
# sets it so that a run's threads are its own and are waited for when it ends.
thread_pool: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("graflow_async_thread_pool", default=None)


async def call_function(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Await `func` if it is async; otherwise run it in the run's thread pool."""
    if _is_async(func):
        return await func(*args, **kwargs)
    return await call_in_thread(func, args, kwargs)


def call_in_thread(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """The future of plain function `func` run in the run's thread pool (with a copy of
    the caller's context variables)."""
    loop = asyncio.get_running_loop()
    job = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    pool = thread_pool.get()
    if type(pool) is RunThreadPool:
        return pool.call(loop, job)
    return loop.run_in_executor(pool, job)
