"""Starting the desktop app: a light window at once, the heavy imports behind it, the model loading as soon
as torch is in, then the real window in its place (see :mod:`attnviz.qt.startup`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "faces-vit.safetensors"
DEFAULT_IMAGE = REPO / "assets" / "images" / "face-01.png"


def check_path(path: Optional[str], what: str) -> Optional[str]:
    """A one-line complaint about a path given on the command line, or None when it exists."""
    if path and not Path(path).exists():
        return f"{what} {path}: no such file or folder"
    return None


def run_app(model: Optional[str] = None, image: Optional[str] = None, device: Optional[str] = None,
            dtype: Optional[str] = None, view_file: Optional[str] = None) -> int:
    """The desktop app; ``view_file`` (``attnviz --state VIEW.json``) reopens a saved view: its model,
    image and view state, instead of the demo model."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .startup import SESSION_MODULES, WINDOW_MODULES, HeldDeliver, Splash, Timing, import_in_background, report

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("attnviz")
    app.setOrganizationName("attnviz")
    timing = Timing.from_env()
    problems = [p for p in (check_path(model, "model"), check_path(image, "image"),
                            check_path(view_file, "view file")) if p]
    for p in problems:
        report(p)
    if view_file and check_path(view_file, "view file"):
        view_file = None  # said above; the demo opens instead
    if not view_file:  # a view file says which model and image to open
        if model is None:
            model = str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None
        if image is None:
            image = str(DEFAULT_IMAGE) if DEFAULT_IMAGE.exists() else None
    splash = Splash(problems)
    state: dict = {}

    def failed(what: str, error: BaseException) -> None:
        msg = f"{what}: {type(error).__name__}: {error}"
        report(msg)
        splash.failed(msg)
        timing.finish(error=msg)

    def session_ready() -> None:
        """torch is in: the worker starts on the model and the image; the results wait for the window."""
        from ..session import Session, Worker

        try:
            state["held"] = held = HeldDeliver()
            state["session"] = session = Session(Worker(deliver=held), device=device, dtype=dtype)
        except Exception as e:
            failed("could not start", e)
            raise
        if view_file:
            try:
                from ..export.view_file import ViewFile, open_view

                open_view(session, ViewFile.load(view_file))
            except Exception as e:  # a broken view file is said in the window; the app still opens
                report(f"view file {view_file}: {e}")
                session.report(e)
            return
        if model and not check_path(model, "model"):
            session.open_model(model)
        if image and not check_path(image, "image"):
            session.open_image(image)

    def window_ready() -> None:
        timing.mark("imports_s")
        if "session" not in state:
            return  # session_ready failed and said so
        try:
            state["window"] = _main_window(splash, state["session"], problems, timing)
        except Exception as e:  # said in the window as well as on stderr, instead of a silent splash
            failed("could not build the window", e)
            raise
        state["held"].release()

    def start_imports() -> None:
        if "imports" not in state:
            state["imports"] = import_in_background(
                [(SESSION_MODULES, session_ready), (WINDOW_MODULES, window_ready)],
                lambda e: failed("could not start", e),
                lambda m: splash.set_status("Loading the model and the window…") if m == WINDOW_MODULES[0] else None)

    splash.first_paint += [lambda: timing.mark("window_s"), start_imports]
    splash.show()
    QTimer.singleShot(500, start_imports)  # in case the splash is never painted (e.g. started minimised)
    code = app.exec()
    # Quit means quit, even in the middle of a long forward on the worker thread: Python would
    # otherwise wait for that thread at exit. Settings were written by the window's closeEvent.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main_window(splash, session, problems: list[str], timing):
    """The real window over ``session``, in the splash's place, with the command line's problems shown."""
    import pyqtgraph as pg

    from .main_window import MainWindow
    from .panels.maps_panel import MapsPanel
    from .startup import LATE_MODULES, _AfterPaint, after_first_map, import_in_background

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    MapsPanel.defer_block_slider = True  # its module (superqt) is imported after the first map, below
    win = MainWindow(session)
    maps = win.panels.get("maps")
    win._late_imports = None

    def late() -> None:
        win._late_imports = import_in_background(
            [(LATE_MODULES, lambda: maps.ensure_block_slider() if maps is not None else None)],
            lambda e: session.report(RuntimeError(f"could not load the block-range slider: {e}")))

    after_first_map(win, late)
    win.restoreGeometry(splash.saveGeometry())  # where the user sees it now (the saved place, or moved since)
    if timing.on:
        win._timing_paint = _AfterPaint(win, lambda: timing.mark("main_window_s"))
        timing.watch_first_map(win)
    win.show()
    splash.close()
    splash.deleteLater()
    if session.pending:  # the window subscribed after the session said what it is doing
        session.busy.emit(session.pending)
    for p in problems:
        session.report(FileNotFoundError(p))
    return win
