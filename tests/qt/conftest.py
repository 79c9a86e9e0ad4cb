"""Shared fixtures of the window tests: small checkpoints saved in timm's format, an image, a window
over a synchronous session with its own settings file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from attnviz.nets import create_net


def save_checkpoint(tmp_path, cfg, name: str) -> str:
    torch.manual_seed(0)
    net = create_net(cfg)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture
def checkpoint(tmp_path):
    """checkpoint(cfg, name) -> path of a random-init network saved as timm safetensors."""
    return lambda cfg, name: save_checkpoint(tmp_path, cfg, name)


@pytest.fixture
def image_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    import pyqtgraph as pg

    from attnviz.qt.main_window import MainWindow
    from attnviz.session import Session, Worker

    pg.setConfigOptions(imageAxisOrder="row-major")
    session = Session(Worker(synchronous=True), device="cpu")
    win = MainWindow(session, settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    broken = [m for m in win.error_log if "panel could not" in m]
    assert broken == [], broken  # a panel that raised while drawing is a bug, even if the app survived



@pytest.fixture
def standalone_panel(qtbot):
    """standalone_panel(PanelClass, model, image, size=(1000, 600)) -> a panel over its own synchronous
    session, shown, with the model and image opened and drawn; at the end no panel may have failed to draw."""
    import pyqtgraph as pg

    from attnviz.session import Session, Worker

    sessions = []

    def make(cls, model: str, image: str, size=(1000, 600)):
        pg.setConfigOptions(imageAxisOrder="row-major")
        s = Session(Worker(synchronous=True), device="cpu")
        sessions.append(s)
        p = cls(s)
        qtbot.addWidget(p)
        p.resize(*size)
        p.show()
        s.open_model(model)
        s.open_image(image)
        p.flush()
        return p

    yield make
    for s in sessions:
        assert not [e for e in s.errors if "panel could not" in e.message], s.errors
