"""Starting the desktop app."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "faces-vit.safetensors"
DEFAULT_IMAGE = REPO / "assets" / "images" / "face-01.png"


def run_app(model: Optional[str] = None, image: Optional[str] = None, device: Optional[str] = None) -> int:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from ..session import Session, Worker
    from .bridge import GuiDeliver
    from .main_window import MainWindow

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("attnviz")
    session = Session(Worker(deliver=GuiDeliver()), device=device)
    win = MainWindow(session)
    win.show()
    model = model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None)
    image = image or (str(DEFAULT_IMAGE) if DEFAULT_IMAGE.exists() else None)
    if model:
        session.open_model(model)
    if image:
        session.open_image(image)
    code = app.exec()
    session.worker.shutdown()
    return code
