"""One background thread that owns the model: loads, forwards, slow products. Stale work is cancelled.

Every request carries a generation number per kind ('model', 'capture', 'product:flow', ...); only the
newest request of a kind delivers its result. A newer request also *cancels* the older one: its
:class:`Job` says so (``job.cancelled()``), and long computations poll it (attention flow takes it as
its ``cancel`` hook), so superseded work stops instead of running to the end unseen. Tests pass
``synchronous=True`` to run requests inline.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

Deliver = Callable[[Callable[[], None]], None]
ProgressFn = Callable[[int, int], None]


class Job:
    """Handle a running request sees: whether it was superseded, and a way to report progress."""

    def __init__(self, kind: str, gen: int, deliver: Deliver, on_progress: Optional[ProgressFn]):
        self.kind, self.gen = kind, gen
        self._cancel = threading.Event()
        self._deliver = deliver
        self._on_progress = on_progress

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def progress(self, done: int, total: int) -> None:
        """Report progress; delivered on the consumer's thread unless the job was cancelled."""
        if self._on_progress is not None and not self.cancelled():
            cb = self._on_progress
            self._deliver(lambda: None if self.cancelled() else cb(done, total))


class Worker:
    def __init__(self, synchronous: bool = False, deliver: Optional[Deliver] = None):
        """``deliver`` runs a completion callback on the consumer's thread (the GUI passes a Qt bridge);
        by default callbacks run on the worker thread itself."""
        self.synchronous = synchronous
        self._deliver: Deliver = deliver or (lambda fn: fn())
        self._pool = None if synchronous else ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnviz-worker")
        self._gen: dict[str, int] = {}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[..., Any], on_done: Callable[[Any], None],
               on_error: Callable[[Exception], None], on_progress: Optional[ProgressFn] = None,
               pass_job: bool = False) -> Job:
        """Run ``fn()`` (``fn(job)`` with ``pass_job``: for work that polls cancellation or reports progress)
        on the worker; the newest request of a kind delivers ``on_done(result)`` or ``on_error(exc)``, older
        ones of that kind are cancelled."""
        with self._lock:
            gen = self._gen.get(kind, 0) + 1
            self._gen[kind] = gen
            old = self._jobs.get(kind)
            job = Job(kind, gen, self._deliver, on_progress)
            self._jobs[kind] = job
        if old is not None:
            old.cancel()
        def run() -> Any:
            if job.cancelled():
                return None  # superseded while it waited in the queue: never started
            return fn(job) if pass_job else fn()

        def finish(result: Any = None, error: Optional[BaseException] = None) -> None:
            if self._gen.get(kind) != gen or job.cancelled():
                return  # a newer request of this kind was made: drop this stale result
            with self._lock:
                if self._jobs.get(kind) is job:
                    del self._jobs[kind]
            if error is not None:
                on_error(error)
            else:
                on_done(result)

        if self._pool is None:
            try:
                res = run()
            except Exception as e:  # reported to the consumer, never raised into the GUI loop
                finish(error=e)
            else:
                finish(res)
            return job

        def done(fut: Future) -> None:
            if fut.cancelled():
                return
            err = fut.exception()
            if err is not None:
                self._deliver(lambda: finish(error=err))
            else:
                res = fut.result()
                self._deliver(lambda: finish(res))

        self._pool.submit(run).add_done_callback(done)
        return job

    def cancel(self, prefix: str = "") -> None:
        """Cancel every pending or running request whose kind starts with ``prefix`` (results dropped)."""
        with self._lock:
            doomed = [k for k in self._jobs if k.startswith(prefix)]
            jobs = [self._jobs.pop(k) for k in doomed]
            for k in doomed:
                self._gen[k] = self._gen.get(k, 0) + 1
        for j in jobs:
            j.cancel()

    def busy(self, prefix: str = "") -> bool:
        """Whether a request of a kind starting with ``prefix`` is pending or running."""
        with self._lock:
            return any(k.startswith(prefix) for k in self._jobs)

    def shutdown(self) -> None:
        self.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

