"""The model browser widget: it lists what is planted on disk with family and architecture, opens a row
on double-click / Open, remembers the user's folders in QSettings, and detects off the GUI thread."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from attnviz.nets import SwinConfig, ViTConfig, create_net  # noqa: E402
from attnviz.qt import model_browser  # noqa: E402
from attnviz.qt.model_browser import COL_ARCH, COL_FAMILY, COL_NAME, COL_SIZE, DETECTING, SETTINGS_KEY, ModelBrowser  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "models"


def _save(net: torch.nn.Module, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user folder with a ViT, a Swin one level down and a broken file; the caches point at empty tmp folders."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "mine"
    torch.manual_seed(0)
    vit = _save(create_net(ViTConfig(img_size=(32, 32), patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                     mlp_hidden_dim=384, num_classes=5)), folder / "vit.safetensors")
    swin = _save(create_net(SwinConfig(img_size=(64, 64), embed_dim=24, depths=(2, 2), num_heads=(2, 4),
                                       window_size=(4, 4), num_classes=3)), folder / "run" / "swin.safetensors")
    broken = folder / "broken.pth"
    broken.write_bytes(b"not a checkpoint" * 8)
    return {"folder": str(folder), "vit": vit, "swin": swin, "broken": str(broken)}


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def _browser(qtbot, settings: QSettings, synchronous: bool = True) -> ModelBrowser:
    browser = ModelBrowser(settings, DEMO_DIR, synchronous=synchronous)
    qtbot.addWidget(browser)
    return browser


def test_lists_demo_models_and_the_users_folder_with_what_they_are(qtbot, settings, user_folder) -> None:
    browser = _browser(qtbot, settings)
    demo = browser.item_for(DEMO_DIR / "faces-vit.safetensors")
    assert demo is not None and demo.text(COL_FAMILY) == "ViT"
    assert demo.parent().text(COL_NAME).startswith("Demo models")
    assert browser.item_for(user_folder["vit"]) is None

    browser.add_folder(user_folder["folder"])
    vit, swin, broken = (browser.item_for(user_folder[k]) for k in ("vit", "swin", "broken"))
    assert (vit.text(COL_NAME), vit.text(COL_FAMILY), vit.text(COL_ARCH)) == (
        "vit.safetensors", "ViT", "ViT-Ti/16 · 2 blocks · 3 heads · 32 px")
    assert (swin.text(COL_NAME), swin.text(COL_FAMILY)) == ("run/swin.safetensors", "Swin")
    assert swin.text(COL_ARCH).startswith("Swin v1 · 24 dim · depths 2-2 · window 4")
    assert vit.text(COL_SIZE).endswith(("kB", "MB"))
    assert broken.text(COL_FAMILY) == "" and "not a recognised weights file" in broken.text(COL_ARCH)
    assert vit.parent() is swin.parent() and vit.parent().text(COL_NAME).startswith("mine")
    groups = [browser.tree.topLevelItem(i).text(COL_NAME) for i in range(browser.tree.topLevelItemCount())]
    assert [g.split(" (")[0] for g in groups] == ["Demo models", "Hugging Face cache", "Torch hub cache", "mine"]


def test_double_click_and_open_emit_the_path(qtbot, settings, user_folder) -> None:
    browser = _browser(qtbot, settings)
    browser.add_folder(user_folder["folder"])
    browser.resize(900, 500)
    browser.show()
    qtbot.waitExposed(browser)
    item = browser.item_for(user_folder["vit"])
    browser.tree.scrollToItem(item)
    rect = browser.tree.visualItemRect(item)
    with qtbot.waitSignal(browser.sigOpen, timeout=2000) as blocker:
        # A real double-click starts with a press: the view only honours one on the item it pressed.
        qtbot.mouseClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [user_folder["vit"]]

    browser.tree.setCurrentItem(browser.item_for(user_folder["swin"]))
    assert browser.open_button.isEnabled()
    with qtbot.waitSignal(browser.sigOpen, timeout=2000) as blocker:
        qtbot.mouseClick(browser.open_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [user_folder["swin"]]

    browser.tree.setCurrentItem(item.parent())  # a group: nothing to open, but a folder to remove
    assert not browser.open_button.isEnabled() and browser.remove_button.isEnabled()


def test_added_folders_persist_in_the_settings(qtbot, settings, user_folder, tmp_path) -> None:
    browser = _browser(qtbot, settings)
    browser.add_folder(user_folder["folder"])
    browser.add_folder(user_folder["folder"])  # once is enough
    browser.add_folder(tmp_path / "vanished")

    again = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    assert again.value(SETTINGS_KEY) == [user_folder["folder"], str(tmp_path / "vanished")]
    reopened = _browser(qtbot, again)
    assert reopened.item_for(user_folder["vit"]) is not None
    gone = reopened.tree.topLevelItem(reopened.tree.topLevelItemCount() - 1)
    assert gone.child(0).text(COL_NAME) == "folder not found"

    reopened.tree.setCurrentItem(reopened.item_for(user_folder["vit"]))
    qtbot.mouseClick(reopened.remove_button, Qt.MouseButton.LeftButton)
    assert reopened.folders() == [str(tmp_path / "vanished")]
    assert reopened.item_for(user_folder["vit"]) is None
    reopened.remove_folder(tmp_path / "vanished")
    assert QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat).value(SETTINGS_KEY, []) in ([], None)


def test_detection_runs_off_the_gui_thread(qtbot, settings, user_folder, monkeypatch) -> None:
    threads = set()
    real = model_browser.describe

    def recording(entry):
        threads.add(threading.current_thread())
        return real(entry)

    monkeypatch.setattr(model_browser, "describe", recording)
    settings.setValue(SETTINGS_KEY, [user_folder["folder"]])
    browser = _browser(qtbot, settings, synchronous=False)
    assert browser.is_busy() and browser.item_for(user_folder["vit"]) is None  # the listing is still on its way
    with qtbot.waitSignal(browser.sigScanFinished, timeout=20000):
        pass
    assert not browser.is_busy()
    assert threads and threading.main_thread() not in threads
    assert browser.item_for(user_folder["vit"]).text(COL_FAMILY) == "ViT"
    assert all(browser.item_for(user_folder[k]).text(COL_ARCH) != DETECTING for k in ("vit", "swin", "broken"))

    # A rescan reuses the descriptions it has: rows are filled at once, no new detection.
    threads.clear()
    with qtbot.waitSignal(browser.sigScanFinished, timeout=20000):
        browser.rescan()
    assert not threads
    assert browser.item_for(user_folder["swin"]).text(COL_FAMILY) == "Swin"
    browser.shutdown()
