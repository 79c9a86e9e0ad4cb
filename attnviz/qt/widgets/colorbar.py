"""A colour bar that always shows its numbers: the colours of a map's range with round ticks beside them.

pyqtgraph's ColorBarItem labels its axis with the axis's own tick rules, which leave the bar bare for
small ranges (a 'min of heads' map whose maximum is 0.002 showed a single '0'), and regenerating those
ticks cost about 2.4 ms per change. This bar draws itself: the gradient, and the labels of
:func:`attnviz.session.display.tick_values` formatted by ``format_ticks`` (both ends always shown), in
the application font, so that it grows with the window's text size (Ctrl+=). A change of range only
repaints it; its width follows the font, not the numbers, so nothing around it is laid out again.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QFontMetricsF, QImage, QPen
from PySide6.QtWidgets import QGraphicsItem, QSizePolicy

from ...session.display import format_ticks, tick_values
from .fonts import plot_font

TEXT = QColor(215, 215, 220)
WIDEST = "−0.000000"  # the width reserved for labels: the longest format_ticks writes, and a sign


class ColorBar(pg.GraphicsWidget):
    """A vertical colour bar for a pyqtgraph layout: ``set(colormap, levels, scale)``, cheap when unchanged."""

    def __init__(self, bar_px: int = 14):
        super().__init__()
        self.bar_px = bar_px
        self.colormap: Optional[str] = None
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.scale = "linear"
        self.ticks: list[float] = []
        self.labels: list[str] = []  # the text of each tick, in the order of ``ticks``
        self._gradient: Optional[QImage] = None
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # repainted only when it changes
        self.refresh_font()

    def refresh_font(self) -> None:
        """Take the application's current font (and the width its numbers need)."""
        self.font = plot_font()
        fm = QFontMetricsF(self.font)
        w = self.bar_px + 10 + fm.horizontalAdvance(WIDEST)
        self.setMinimumWidth(w)
        self.setMaximumWidth(w)
        self.update()

    def set(self, colormap: str, lo_hi: tuple[float, float], scale: str = "linear") -> None:
        lo_hi = (float(lo_hi[0]), float(lo_hi[1]))
        if (colormap, lo_hi, scale) == (self.colormap, self.levels, self.scale):
            return
        if colormap != self.colormap:
            lut = pg.colormap.get(colormap).getLookupTable(nPts=256, alpha=True)  # (256, 4) uint8
            rgba = np.ascontiguousarray(lut[::-1].reshape(256, 1, 4))  # top row = the highest value
            # a deep copy: Qt owns the pixels, so no numpy buffer has to outlive the image (or its painter)
            self._gradient = QImage(rgba.data, 1, 256, 4, QImage.Format.Format_RGBA8888).copy()
        self.colormap, self.levels, self.scale = colormap, lo_hi, scale
        self.ticks = tick_values(*lo_hi)
        self.labels = format_ticks(self.ticks, scale)
        self.update()

    def _bar_rect(self) -> QRectF:
        r = self.boundingRect()
        pad = QFontMetricsF(self.font).height() / 2 + 2
        return QRectF(r.left() + 2, r.top() + pad, self.bar_px, max(r.height() - 2 * pad, 1))

    def placed(self, bar: Optional[QRectF] = None) -> list[tuple[int, float]]:
        """(tick index, y) of the labels that fit beside ``bar``: the two ends always, then the ticks
        between them that keep a line's height from every label already placed."""
        bar = self._bar_rect() if bar is None else bar
        lo, hi = self.levels
        if not hi > lo or not self.ticks:
            return []
        gap = QFontMetricsF(self.font).height() * 0.95
        out: list[tuple[int, float]] = []
        for i in [0, len(self.ticks) - 1] + list(range(1, len(self.ticks) - 1)):
            y = bar.bottom() - (self.ticks[i] - lo) / (hi - lo) * bar.height()
            if i in (0, len(self.ticks) - 1) or all(abs(y - q) >= gap for _j, q in out):
                out.append((i, y))
        return out

    def shown_labels(self) -> list[str]:
        """The numbers a paint writes now, top to bottom (for tests and for reading the bar back)."""
        return [self.labels[i] for i, _y in sorted(self.placed(), key=lambda iy: iy[1])]

    def paint(self, p, *_args) -> None:
        if self._gradient is None:
            return
        bar = self._bar_rect()
        p.drawImage(bar, self._gradient)
        pen = QPen(QColor(120, 120, 128))
        pen.setCosmetic(True)
        p.setPen(pen)
        p.drawRect(bar)
        p.setFont(self.font)
        p.setPen(TEXT)
        ascent = QFontMetricsF(self.font).ascent()
        for i, y in self.placed(bar):
            p.drawLine(QPointF(bar.right(), y), QPointF(bar.right() + 3, y))
            p.drawText(QPointF(bar.right() + 6, y + ascent / 2 - 1), self.labels[i])
