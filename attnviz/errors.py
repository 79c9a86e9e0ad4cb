"""How a failure is said to the user, in one place: one line of text (:func:`one_line`), and the
command-line rule (:func:`run_reporting`): a sub-command's error ends as ``attnviz: error: ...`` on
stderr and exit status 1, never a traceback (``ATTNVIZ_DEBUG=1`` shows the traceback instead).

No Qt, no torch: the command line's parser imports this before anything heavy."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable


def one_line(e: BaseException | str, with_type: bool = False, first_line: bool = False) -> str:
    """The message of ``e`` on one line: its whitespace collapsed (``first_line``: only its first line),
    the exception's class name when it has no message (``with_type``: always, as 'Name: message')."""
    text = e if isinstance(e, str) else str(e)
    text = text.strip()
    if first_line:
        text = (text.splitlines() or [""])[0].strip()
    text = " ".join(text.split())
    if isinstance(e, BaseException):
        name = type(e).__name__
        if not text:
            return name
        if with_type:
            return f"{name}: {text}"
    return text


def run_reporting(fn: Callable[[Any], Any], args: Any) -> int:
    """``fn(args)`` as a command: its int result (None: 0) is the exit status; an exception is one line
    on stderr and status 1; Ctrl-C says 'interrupted'."""
    try:
        status = fn(args)
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one line for the user, never a traceback
        if os.environ.get("ATTNVIZ_DEBUG"):
            raise
        print(f"attnviz: error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


__all__ = ["one_line", "run_reporting"]
