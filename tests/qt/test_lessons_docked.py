"""The lesson panels live in the window as lazily built docks: none is built until it is shown, each one
built later draws what is already loaded, and each follows the shared view state (block steps with the
window's keys) for every demo model without a drawing error."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from attnviz.qt.main_window import LESSONS

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ("faces-vit", "faces-vit-nope", "faces-swin", "faces-swinv2")


def _open(window, model: str, image: str = "face-01.png") -> None:
    window.session.open_model(str(ROOT / "models" / f"{model}.safetensors"))
    window.session.open_image(str(ROOT / "assets" / "images" / image))
    window.flush()


def test_lessons_are_not_built_until_shown(window):
    _open(window, "faces-vit")
    for name, title, _module, _cls in LESSONS:
        assert name not in window.panels
        assert isinstance(window.docks[name].widget(), QLabel)
        assert window.docks[name].windowTitle() == title
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    titles = {a.text() for a in menus["&View"].actions()}
    assert {t for _n, t, _m, _c in LESSONS} <= titles  # every lesson can be shown again from View

def test_showing_a_lesson_tab_builds_it_with_the_current_capture(window, qtbot):
    _open(window, "faces-vit")
    dock = window.docks["stats"]
    dock.show()
    dock.raise_()
    qtbot.waitUntil(lambda: "stats" in window.panels, timeout=5000)
    panel = window.panels["stats"]
    assert dock.widget() is panel
    assert panel.session is window.session


@pytest.mark.parametrize("model", DEMOS)
def test_every_lesson_draws_every_demo_model_and_follows_the_block(window, qtbot, model):
    _open(window, model)
    v = window.session.view
    for name, *_ in LESSONS:
        dock = window.docks[name]
        dock.show()
        dock.raise_()
        panel = window.panel(name)
        panel.flush()
        qtbot.keyClick(window, Qt.Key.Key_End)  # the window's keys step the block for every panel
        assert v.block == v.limits.num_blocks - 1
        panel.flush()
        qtbot.keyClick(window, Qt.Key.Key_Up)
        assert v.block == v.limits.num_blocks - 2
        panel.flush()
        qtbot.keyClick(window, Qt.Key.Key_Home)
        panel.flush()
    assert window.error_log == []


def test_one_tab_bar_per_dock_stack(window, qtbot):
    """Each stack of docks shows one tab bar (Qt leaves a stale two-tab bar behind when the lessons are
    tabbed onto Maps; it must not be painted over the docks)."""
    from PySide6.QtWidgets import QTabBar

    window.resize(1600, 1000)
    qtbot.wait(50)
    visible = [b for b in window.findChildren(QTabBar) if b.parent() is window and b.isVisible()]
    first_tabs = [b.tabText(0) for b in visible]
    assert sorted(first_tabs) == ["Maps", "Predictions"], first_tabs
