"""One background thread that owns the model: loads, forwards. Stale results are dropped.

Every request carries a generation number per kind ('model', 'image', ...); only the newest request of
a kind delivers its result. Tests pass ``synchronous=True`` to run requests inline.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

Deliver = Callable[[Callable[[], None]], None]


class Worker:
    def __init__(self, synchronous: bool = False, deliver: Optional[Deliver] = None):
        """``deliver`` runs a completion callback on the consumer's thread (the GUI passes a Qt bridge);
        by default callbacks run on the worker thread itself."""
        self.synchronous = synchronous
        self._deliver: Deliver = deliver or (lambda fn: fn())
        self._pool = None if synchronous else ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnviz-worker")
        self._gen: dict[str, int] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[], Any], on_done: Callable[[Any], None],
               on_error: Callable[[Exception], None]) -> int:
        with self._lock:
            gen = self._gen.get(kind, 0) + 1
            self._gen[kind] = gen

        def finish(result: Any = None, error: Optional[Exception] = None) -> None:
            if self._gen.get(kind) != gen:
                return  # a newer request of this kind was made: drop this stale result
            if error is not None:
                on_error(error)
            else:
                on_done(result)

        if self._pool is None:
            try:
                res = fn()
            except Exception as e:  # reported to the consumer, never raised into the GUI loop
                finish(error=e)
            else:
                finish(res)
            return gen

        def done(fut: Future) -> None:
            err = fut.exception()
            if err is not None:
                self._deliver(lambda: finish(error=err))
            else:
                res = fut.result()
                self._deliver(lambda: finish(res))

        self._pool.submit(fn).add_done_callback(done)
        return gen

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
