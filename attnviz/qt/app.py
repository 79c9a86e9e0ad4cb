"""Starting the desktop app: the window first, then the model and image load behind it on the worker."""
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
            dtype: Optional[str] = None) -> int:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("attnviz")
    app.setOrganizationName("attnviz")

    from ..session import Session, Worker
    from .bridge import GuiDeliver
    from .main_window import MainWindow

    session = Session(Worker(deliver=GuiDeliver()), device=device, dtype=dtype)
    win = MainWindow(session)
    win.show()
    problems = [p for p in (check_path(model, "model"), check_path(image, "image")) if p]
    for p in problems:
        print(f"attnviz: {p}", file=sys.stderr)
        session._fail(FileNotFoundError(p))
    if model is None:
        model = str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None
    if image is None:
        image = str(DEFAULT_IMAGE) if DEFAULT_IMAGE.exists() else None
    if model and not check_path(model, "model"):
        session.open_model(model)
    if image and not check_path(image, "image"):
        session.open_image(image)
    code = app.exec()
    # Quit means quit, even in the middle of a long forward on the worker thread: Python would
    # otherwise wait for that thread at exit. Settings were written by the window's closeEvent.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
