"""The app's first second: a light window with a busy indicator at once, PyTorch and the rest behind it.

Importing torch takes about two seconds and pyqtgraph most of another, and the real window
(:mod:`attnviz.qt.main_window`) cannot be built before both are in. So :func:`attnviz.qt.app.run_app`
shows a :class:`Splash` built from PySide6 alone as soon as the QApplication exists, imports the heavy
modules on a background thread (:func:`import_in_background`) once the splash is on screen, starts
loading the model and image on the session's worker as soon as torch is in (their results held back by
:class:`HeldDeliver`), and builds the MainWindow on the GUI thread in the splash's place when pyqtgraph
is in too. This module imports nothing heavier than PySide6's QtCore and QtWidgets.

``ATTNVIZ_TIMING=path`` (:class:`Timing`): the app writes, as JSON, when its window was first painted
(``window_s``), when the real window was (``main_window_s``), when the imports were done (``imports_s``)
and when the first attention map was painted (``first_map_s``), in seconds since the process started,
then quits. A failure (a bad path, a broken checkpoint) is written as ``error`` and quits with status 1.
The benchmark (bench/ui_figures.py) and tests/qt/test_startup.py use it.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from .bridge import GuiDeliver

# What the session needs (the model can start loading then), and what the window needs besides;
# together about 3 s of a warm start here (torch alone ~2 s, pyqtgraph ~0.6 s).
SESSION_MODULES = ("torch", "attnviz.model", "attnviz.session", "attnviz.images", "attnviz.analysis.query")
WINDOW_MODULES = ("pyqtgraph", "attnviz.qt.main_window")
# What only a control needs (superqt's range slider: ~0.3 s, since qtpy imports all of QtGui and QtOpenGL):
# imported after the first map is painted, so that it does not compete with the first paint
LATE_MODULES = ("superqt",)
DEFAULT_SIZE = (1480, 900)  # the MainWindow's own default size, so that the swap does not jump
_IMPORTED_AT = time.perf_counter()


def process_age() -> float:
    """Seconds since this process started (Linux: the kernel's start time of the process, so the
    interpreter's own start-up counts too; elsewhere: since this module was imported)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode()
        start_ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime, in clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED_AT


class Timing:
    """Start-up timestamps for ``ATTNVIZ_TIMING=path``; every method is a no-op without a path."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.marks: dict[str, object] = {}

    @classmethod
    def from_env(cls) -> "Timing":
        return cls(os.environ.get("ATTNVIZ_TIMING") or None)

    @property
    def on(self) -> bool:
        return self.path is not None

    def mark(self, name: str) -> None:
        """Record ``name`` once, in seconds since the process started."""
        if self.on and name not in self.marks:
            self.marks[name] = round(process_age(), 4)

    def finish(self, error: Optional[str] = None) -> None:
        """Write the marks (and the error, if any) and quit the app: status 1 after an error."""
        if not self.on:
            return
        if error is not None:
            self.marks["error"] = error
        Path(self.path).write_text(json.dumps(self.marks))
        from PySide6.QtWidgets import QApplication

        QApplication.exit(1 if error is not None else 0)

    def watch_first_map(self, window) -> None:
        """Mark ``first_map_s`` when the image panel paints after the first capture, then finish;
        finish with the error when the session reports one first."""
        if not self.on:
            return
        session = window.session
        view = window.panels["image"].view

        def captured() -> None:
            session.captured.disconnect(captured)
            if not view.isVisible():  # the user's layout hides the image panel: the capture is all there is
                QTimer.singleShot(0, done)
                return
            self._paint_filter = _AfterPaint(view.viewport(), done)

        def done() -> None:
            self.mark("first_map_s")
            self.finish()

        session.captured.connect(captured)
        session.error.connect(lambda msg: self.finish(error=msg))


def after_first_map(window, fn: Callable[[], None], fallback_ms: int = 4000) -> None:
    """Run ``fn`` once, after the image panel has painted the first capture (or after ``fallback_ms``
    when none comes, e.g. no model given)."""
    session = window.session
    view = window.panels["image"].view
    state = {"done": False}

    def once() -> None:
        if not state["done"]:
            state["done"] = True
            fn()

    def captured() -> None:
        session.captured.disconnect(captured)
        if view.isVisible():
            window._first_map_paint = _AfterPaint(view.viewport(), once)
        else:
            QTimer.singleShot(0, once)

    session.captured.connect(captured)
    QTimer.singleShot(fallback_ms, once)


class _AfterPaint(QObject):
    """Calls ``fn`` once, in the event-loop turn after ``widget`` next paints (the paint is then done)."""

    def __init__(self, widget: QWidget, fn: Callable[[], None]):
        super().__init__(widget)
        self.fn = fn
        widget.installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.Paint and self.fn is not None:
            fn, self.fn = self.fn, None
            obj.removeEventFilter(self)
            QTimer.singleShot(0, fn)
        return False


class Splash(QWidget):
    """What the user sees while PyTorch loads: the app's name, a busy bar and what is happening, in
    the place and size the main window will take. ``first_paint`` callbacks run once it is on screen."""

    def __init__(self, problems: list[str] = ()):
        super().__init__()
        self.setWindowTitle("attnviz")
        self.first_paint: list[Callable[[], None]] = []  # run once, after the first paint
        self._watched = False
        lay = QVBoxLayout(self)
        lay.addStretch(3)
        name = QLabel("attnviz")
        name.setStyleSheet("font-size:28pt;font-weight:600")
        tagline = QLabel("See how Vision Transformers attend")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # indeterminate: a busy indicator
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(280)
        self.status = QLabel("Loading PyTorch…")
        self.problems = QLabel("\n".join(problems))
        self.problems.setStyleSheet("color:#c0392b")
        self.problems.setVisible(bool(problems))
        for label in (self.status, self.problems):  # the window's width, so that long paths wrap, not clip
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        for w in (name, tagline, self.bar):
            lay.addWidget(w, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(self.status)
        lay.addWidget(self.problems)
        lay.addStretch(4)
        self._place()

    def _place(self) -> None:
        """Where the main window will be: its saved geometry (read without importing it), else its default size."""
        geo = QSettings("attnviz", "attnviz").value("layout/geometry")
        if geo is None or not self.restoreGeometry(geo):
            self.resize(*DEFAULT_SIZE)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def failed(self, text: str) -> None:
        """The app cannot start: say why and stop the busy bar (closing the window quits)."""
        self.bar.setVisible(False)
        self.status.setText(text)
        self.status.setStyleSheet("color:#c0392b")

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if not self._watched:
            self._watched = True
            _AfterPaint(self, lambda: [fn() for fn in self.first_paint])  # once this paint reached the screen


def import_in_background(stages: list[tuple[tuple[str, ...], Callable[[], None]]],
                         on_error: Callable[[BaseException], None],
                         on_progress: Callable[[str], None] = lambda _m: None) -> threading.Thread:
    """Import each stage's modules on a daemon thread, in order; after each stage its callback runs on
    the GUI thread (``on_error(exception)`` instead, and nothing further, when an import fails), and
    ``on_progress(module)`` before each module. The GUI stays live meanwhile, except while the thread
    holds the interpreter lock in one long C call (loading torch's libraries: tenths of a second)."""
    import importlib

    deliver = GuiDeliver()

    def run() -> None:
        try:
            for modules, done in stages:
                for name in modules:
                    deliver(lambda name=name: on_progress(name))
                    importlib.import_module(name)
                deliver(done)
        except BaseException as e:  # reported in the window; the thread ends either way
            deliver(lambda e=e: on_error(e))

    t = threading.Thread(target=run, name="attnviz-imports", daemon=True)
    t._deliver = deliver  # keep the bridge alive as long as the thread
    t.start()
    return t


class HeldDeliver:
    """A worker's ``deliver`` that holds results back until :meth:`release`, then hands them (and every
    later one) to the GUI thread in order. The session starts loading the model while the window's
    modules are still being imported; what it finishes meanwhile waits for the window that shows it."""

    def __init__(self):
        self._gui = GuiDeliver()
        self._held: Optional[list[Callable[[], None]]] = []
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(fn)
                return
        self._gui(fn)

    def release(self) -> None:
        with self._lock:  # posted under the lock, so that nothing delivered meanwhile overtakes them
            held, self._held = self._held or [], None
            for fn in held:
                self._gui(fn)


def report(problem: str) -> None:
    print(f"attnviz: {problem}", file=sys.stderr, flush=True)
