"""The model worker: requests run off the caller's thread, only the newest result of a kind arrives."""
from __future__ import annotations

import threading

from attnviz.session import Worker


def test_stale_results_are_dropped_and_errors_are_reported():
    w = Worker()
    release = threading.Event()
    got, errors, finished = [], [], threading.Event()

    def slow():
        release.wait(5)
        return "old"

    w.submit("capture", slow, got.append, errors.append)
    w.submit("capture", lambda: "new", lambda r: (got.append(r), finished.set()), errors.append)
    release.set()
    assert finished.wait(5)
    image_done = threading.Event()
    w.submit("model", lambda: 1 / 0, got.append, errors.append)
    w.submit("image", lambda: "img", lambda r: (got.append(r), image_done.set()), errors.append)
    assert image_done.wait(5)  # one worker thread: the model request has finished before the image one
    w.shutdown()
    assert "old" not in got and got[0] == "new" and "img" in got
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)


def test_synchronous_mode_runs_inline_on_the_callers_thread():
    w = Worker(synchronous=True)
    seen = []
    w.submit("x", lambda: threading.get_ident(), seen.append, seen.append)
    assert seen == [threading.get_ident()]
