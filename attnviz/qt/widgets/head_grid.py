"""Small multiples painted by one widget: a tile per head, each with a caption, a border (the selected
one highlighted), an outline of the hovered token and hatching where the head has no value.

Twelve pyqtgraph view boxes with a label each made a repaint walk some 130 graphics items (and call
back into Python for each one's bounding box) although only a border or a caption had changed. Here a
repaint is one pass of QPainter calls: a few small images scaled without smoothing (one colour per
token), some text and rectangles; all but the hover outline is kept as a pixmap between changes, so a
hover repaint is one blit and a few rectangles. Text uses the widget's font, so it follows the
application font.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetricsF, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from .colorize import premultiplied
from .hatch import HATCH

BACKGROUND = QColor(30, 30, 34)
BORDER = QColor(70, 70, 78)
SELECTED = QColor(80, 220, 255)
HOVER = QColor(255, 255, 255)
TEXT = QColor(221, 221, 221)


class HeadGrid(QWidget):
    """``set_tiles`` (images), ``set_captions``, ``set_selected``, ``set_hover``; ``sigClicked(index)``."""

    sigClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 90)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # the paint fills every pixel itself
        self.images: list[QImage] = []
        self._buffers: list[np.ndarray] = []
        self.shape: tuple[int, int] = (1, 1)  # (h, w) tokens of every tile
        self.outside: Optional[np.ndarray] = None  # (h, w) bool: tokens without a value (hatched)
        self._runs: list[tuple[int, int, int]] = []  # (row, first col, end col) of the outside runs
        self.captions: list[str] = []
        self.selected: Optional[int] = None
        self.hover: Optional[tuple[int, int]] = None  # (row, col) on the tiles' token grid
        self._pixmap: Optional[QPixmap] = None  # everything but the hover outline, until something changes

    # -- content --------------------------------------------------------------------------------
    def set_tiles(self, rgbas: list[np.ndarray], outside: Optional[np.ndarray] = None) -> None:
        """One (h, w, 4) uint8 image per tile, all the same size; ``outside`` (h, w) bool is hatched."""
        pairs = [premultiplied(x) for x in rgbas]
        self.images = [q for q, _b in pairs]
        self._buffers = [b for _q, b in pairs]
        self.shape = rgbas[0].shape[:2] if rgbas else (1, 1)
        self.outside = outside
        self._runs = []
        if outside is not None:
            for r, row in enumerate(np.asarray(outside, dtype=bool)):
                edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
                self._runs += [(r, int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
        if len(self.captions) != len(self.images):
            self.captions = [""] * len(self.images)
        self._invalidate()

    def set_captions(self, captions: list[str]) -> None:
        if captions != self.captions:
            self.captions = list(captions)
            self._invalidate()

    def set_selected(self, index: Optional[int]) -> None:
        if index != self.selected:
            self.selected = index
            self._invalidate()

    def set_hover(self, cell: Optional[tuple[int, int]]) -> None:
        if cell != self.hover:
            self.hover = cell
            self.update()

    def _invalidate(self) -> None:
        self._pixmap = None
        self.update()

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._pixmap = None

    def changeEvent(self, ev) -> None:
        if ev.type() == QEvent.Type.FontChange:
            self._pixmap = None
        super().changeEvent(ev)

    # -- geometry -------------------------------------------------------------------------------
    def columns(self) -> int:
        return max(1, int(np.ceil(np.sqrt(len(self.images))))) if self.images else 1

    def tile_rect(self, index: int) -> QRectF:
        """Where tile ``index`` is drawn (widget pixels), its aspect kept, below its caption line."""
        n = max(len(self.images), 1)
        cols = self.columns()
        rows = int(np.ceil(n / cols))
        line = QFontMetricsF(self.font()).height() + 2
        cw, ch = self.width() / cols, self.height() / rows
        r, c = divmod(index, cols)
        box = QRectF(c * cw + 3, r * ch + line, cw - 6, ch - line - 3)
        h, w = self.shape
        k = max(min(box.width() / w, box.height() / h), 0.01)  # pixels per token
        return QRectF(box.center().x() - w * k / 2, box.top() + (box.height() - h * k) / 2, w * k, h * k)

    def hover_rect(self, index: int) -> Optional[QRectF]:
        """The hovered token's outline on tile ``index``, or None."""
        if self.hover is None or not self.images:
            return None
        t = self.tile_rect(index)
        h, w = self.shape
        r, c = self.hover
        return QRectF(t.left() + c * t.width() / w, t.top() + r * t.height() / h, t.width() / w, t.height() / h)

    # -- painting and the mouse -----------------------------------------------------------------
    def paintEvent(self, _ev) -> None:
        if self._pixmap is None or self._pixmap.size() != self.size() * self.devicePixelRatioF():
            self._pixmap = self._render()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._pixmap)
        pen = QPen(HOVER)
        pen.setWidthF(1.5)
        p.setPen(pen)
        for i in range(len(self.images)):
            hr = self.hover_rect(i)
            if hr is not None:
                p.drawRect(hr)
        p.end()

    def _render(self) -> QPixmap:
        """The tiles, hatching, borders and captions, as a pixmap of the widget's size."""
        dpr = self.devicePixelRatioF()
        pm = QPixmap(self.size() * dpr)
        pm.setDevicePixelRatio(dpr)
        pm.fill(BACKGROUND)
        if not self.images:
            return pm
        p = QPainter(pm)
        fm = QFontMetricsF(self.font())
        cols = self.columns()
        cw = self.width() / cols
        h, w = self.shape
        hatch = QBrush(HATCH, Qt.BrushStyle.BDiagPattern)
        for i, img in enumerate(self.images):
            t = self.tile_rect(i)
            p.drawImage(t, img)  # no smoothing: one colour per token
            if self._runs:
                sx, sy = t.width() / w, t.height() / h
                for r, a, b in self._runs:
                    p.fillRect(QRectF(t.left() + a * sx, t.top() + r * sy, (b - a) * sx, sy), hatch)
            sel = i == self.selected
            pen = QPen(SELECTED if sel else BORDER)
            pen.setWidthF(3 if sel else 1)
            p.setPen(pen)
            p.drawRect(t.adjusted(-1, -1, 1, 1))
            f = self.font()
            f.setBold(sel)
            p.setFont(f)
            p.setPen(SELECTED if sel else TEXT)
            line = QRectF((i % cols) * cw, t.top() - fm.height() - 3, cw, fm.height() + 2)
            text = QFontMetricsF(f).elidedText(self.captions[i] if i < len(self.captions) else "",
                                               Qt.TextElideMode.ElideRight, cw - 4)
            p.drawText(line, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom), text)
        p.end()
        return pm

    def index_at(self, pos: QPointF) -> Optional[int]:
        for i in range(len(self.images)):
            if self.tile_rect(i).contains(pos):
                return i
        return None

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            i = self.index_at(ev.position())
            if i is not None:
                self.sigClicked.emit(i)
        super().mousePressEvent(ev)
