"""Combo boxes whose items carry the view-state value they stand for."""
from __future__ import annotations

from PySide6.QtWidgets import QComboBox


def combo(items: list[tuple[str, object]], tip: str) -> QComboBox:
    """A combo of (text, value) items with a tooltip."""
    c = QComboBox()
    for text, data in items:
        c.addItem(text, data)
    c.setToolTip(tip)
    return c


def select_data(c: QComboBox, data) -> None:
    """Show the item whose value is ``data`` without emitting (the state already holds it)."""
    i = c.findData(data)
    if i >= 0 and i != c.currentIndex():
        c.blockSignals(True)
        c.setCurrentIndex(i)
        c.blockSignals(False)
