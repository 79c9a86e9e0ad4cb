"""Two overlay views side by side, each with a caption above it and its model's prediction below:
the layout the Scramble panel (original | scrambled) and the Compare panel (model A | model B) share.

The caller makes the two views (the Scramble panel's right one takes drags, the Compare panel's both
have colour bars) and draws into them; this widget only places them and their labels.
"""
from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from .overlay import OverlayView
from .predictions import PredictionLabel


def _caption() -> QLabel:
    label = QLabel("")
    label.setStyleSheet("font-weight:600")
    label.setWordWrap(True)
    return label


class SideBySide(QWidget):
    """``caption_a``/``view_a``/``pred_a`` on the left, ``caption_b``/``view_b``/``pred_b`` on the right;
    the views take the spare height and share the width equally."""

    def __init__(self, view_a: OverlayView, view_b: OverlayView, parent=None):
        super().__init__(parent)
        self.caption_a, self.caption_b = _caption(), _caption()
        self.view_a, self.view_b = view_a, view_b
        self.pred_a, self.pred_b = PredictionLabel(), PredictionLabel()
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, (cap, view, pred) in enumerate(((self.caption_a, view_a, self.pred_a),
                                                  (self.caption_b, view_b, self.pred_b))):
            grid.addWidget(cap, 0, col)
            grid.addWidget(view, 1, col)
            grid.addWidget(pred, 2, col)
            grid.setColumnStretch(col, 1)
        grid.setRowStretch(1, 1)


__all__ = ["SideBySide"]
