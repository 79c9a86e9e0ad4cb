"""The main window over a synchronous session: loads, draws, switches views without re-running the model,
and survives bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

pytest.importorskip("pytestqt")

from attnviz.nets import SwinConfig, ViTConfig, create_net  # noqa: E402
from attnviz.session import Session, Worker  # noqa: E402


def _checkpoint(tmp_path, cfg, name):
    torch.manual_seed(0)
    net = create_net(cfg)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture
def image_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def window(qtbot):
    import pyqtgraph as pg

    from attnviz.qt.main_window import MainWindow

    pg.setConfigOptions(imageAxisOrder="row-major")
    session = Session(Worker(synchronous=True), device="cpu")
    win = MainWindow(session)
    qtbot.addWidget(win)
    return win


def test_vit_map_follows_block_head_and_query_without_rerunning(window, tmp_path, image_path, monkeypatch):
    s = window.session
    s.open_model(_checkpoint(tmp_path, ViTConfig(img_size=(64, 64), embed_dim=128, num_heads=2, depth=3,
                                                  mlp_hidden_dim=256, num_classes=5), "vit"))
    s.open_image(image_path)
    assert s.capture is not None and len(s.capture.blocks) == 3
    heat, marker, label = s.current_map()
    assert heat.shape == (64, 64) and marker is None and label == "cls token"
    assert window.preds.count() == 5

    calls = []
    monkeypatch.setattr(s.model.net, "capture", lambda *a, **k: calls.append(1))
    window.block.setValue(2)
    assert s.block == 2
    window.head.setCurrentIndex(4)
    window.head.activated.emit(4)  # "head 1"
    assert s.head == 1
    s.pick_pixel(40.0, 20.0)  # row 2, col 1 of the 4x4 grid
    assert s.query == (2, 1)
    heat2, marker2, label2 = s.current_map()
    assert label2 == "patch (2, 1)" and marker2 == (24.0, 40.0)
    attn = s.capture.blocks[2].attn[0, 1, 1 + 2 * 4 + 1, 1:].reshape(4, 4).numpy()
    np.testing.assert_allclose(heat2[::16, ::16], attn, rtol=0, atol=1e-7)
    assert calls == []  # switching block, head and query read the cached capture


def test_swin_map_is_the_query_window(window, tmp_path, image_path):
    s = window.session
    cfg = SwinConfig(img_size=(64, 64), embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 4),
                     num_classes=3)
    s.open_model(_checkpoint(tmp_path, cfg, "swin"))
    s.open_image(image_path)
    s.set_view(block=1, query=(0, 0))  # shifted block of stage 0: window wraps around
    heat, marker, label = s.current_map()
    assert heat.shape == s.capture.img_size  # a bare Swin file implies timm's default 224 input
    assert 0 < np.count_nonzero(heat[::4, ::4]) <= 16  # one 4x4 window of the stage grid
    assert "stage-0" in label


def test_bad_files_give_one_message_and_the_app_stays_usable(window, tmp_path, image_path):
    s = window.session
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00not a checkpoint")
    s.open_model(str(bad))
    assert s.model is None and "broken.safetensors" in s.last_error
    assert "broken.safetensors" in window.info.text()
    s.open_image(str(tmp_path / "missing.png"))
    assert "missing.png" in s.last_error
    s.open_model(_checkpoint(tmp_path, ViTConfig(img_size=(32, 32), embed_dim=64, num_heads=1, depth=1,
                                                  mlp_hidden_dim=64, num_classes=2), "ok"))
    s.open_image(image_path)
    assert s.capture is not None
