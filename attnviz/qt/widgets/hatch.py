"""Hatching for tokens that have no value at all (Swin: outside the query's window), so that "not
attended" never looks like "low attention" (dark in every colormap used here)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

HATCH = QColor(150, 150, 160)
LEGEND = "hatched = outside the query's window: Swin computes no attention there (not the same as low attention)"


def mask_path(mask: np.ndarray, cell: float = 1.0, origin: tuple[float, float] = (0.0, 0.0),
              path: QPainterPath = None) -> QPainterPath:
    """The cells where the (h, w) bool ``mask`` is set, as rectangles of ``cell`` units from ``origin``
    (x, y); each row's runs are one rectangle."""
    path = QPainterPath() if path is None else path
    x0, y0 = origin
    for r, row in enumerate(np.asarray(mask, dtype=bool)):
        padded = np.concatenate(([False], row, [False])).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))  # run starts and ends, alternating
        for a, b in zip(edges[::2], edges[1::2]):
            path.addRect(QRectF(x0 + a * cell, y0 + r * cell, (b - a) * cell, cell))
    return path


def hatch_item() -> QGraphicsPathItem:
    """A path item filled with diagonal lines (in screen pixels, whatever the zoom) over a dark grey."""
    item = QGraphicsPathItem()
    item.setBrush(QBrush(HATCH, Qt.BrushStyle.BDiagPattern))
    item.setPen(QPen(Qt.PenStyle.NoPen))
    item.setZValue(3)
    return item
