"""Drawing pieces of the Swin panel: labelled image plots with a colour bar, categorical colourings of
windows and shift regions, and outlines of rectangles in image coordinates."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem, QLabel, QVBoxLayout, QWidget

from ...analysis.windows import Rect
from ..widgets.colorbar import ColorBar
from ..widgets.fonts import style_plot
from ..widgets.overlay import OverlayView, lookup_table

BACKGROUND = (30, 30, 34)
QUERY_COLOR = QColor(80, 220, 255)
# qualitative palettes (Okabe–Ito and Tableau-like): windows cycle through 10, the 9 regions get one each
WINDOW_COLORS = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                          (213, 94, 0), (204, 121, 167), (160, 160, 160), (148, 103, 189), (140, 86, 75)], np.uint8)
REGION_COLORS = np.array([(120, 120, 130), (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
                          (213, 94, 0), (204, 121, 167), (148, 103, 189), (0, 200, 200)], np.uint8)


def categorical_rgba(labels: np.ndarray, palette: np.ndarray, alpha: int) -> np.ndarray:
    """(h, w) int labels -> (h, w, 4) uint8 colours (label mod palette size), transparent where label < 0."""
    out = np.zeros(labels.shape + (4,), np.uint8)
    ok = labels >= 0
    out[ok, :3] = palette[labels[ok] % len(palette)]
    out[ok, 3] = alpha
    return out


def color_chip(rgb, text: str) -> str:
    """Rich text: a small coloured square followed by ``text`` (for legends in labels)."""
    r, g, b = (int(c) for c in rgb)
    return f"<span style='color:rgb({r},{g},{b})'>■</span>&nbsp;{text}"


def rect_item(r: QRectF, pen: QPen, brush: Optional[QBrush] = None, z: float = 15) -> QGraphicsRectItem:
    item = QGraphicsRectItem(r)
    item.setPen(pen)
    if brush is not None:
        item.setBrush(brush)
    item.setZValue(z)
    return item


def cosmetic_pen(color, width: float, style=Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(QColor(color) if not isinstance(color, QColor) else color)
    pen.setCosmetic(True)
    pen.setWidthF(width)
    pen.setStyle(style)
    return pen


class NumberLabels(QGraphicsItem):
    """Short labels centred on points of the view (window numbers), all painted by one item in screen
    pixels: the text keeps its size when the view zooms, and 64 labels cost one paint call instead of
    64 text items to build, lay out and transform whenever the block changes."""

    def __init__(self, labels: list[tuple[str, float, float]], color=(255, 255, 255), fill=(20, 20, 24, 170),
                 point_size: float = 11.0):
        super().__init__()
        self.labels = labels  # (text, x, y) in view coordinates
        self.color, self.fill = QColor(*color), QColor(*fill)
        self.font = QFont()
        self.font.setPointSizeF(point_size)
        self.font.setBold(True)
        xs = [x for _t, x, _y in labels] or [0.0]
        ys = [y for _t, _x, y in labels] or [0.0]
        self._bounds = QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)).adjusted(-8, -8, 8, 8)
        self.setZValue(30)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, p, _option, _widget=None) -> None:
        to_screen = p.transform()
        p.save()
        p.resetTransform()  # draw in device pixels at each anchor's screen position
        p.setFont(self.font)
        fm = QFontMetricsF(self.font)
        for text, x, y in self.labels:
            c = to_screen.map(QPointF(x, y))
            w, h = fm.horizontalAdvance(text) + 6, fm.height()
            box = QRectF(c.x() - w / 2, c.y() - h / 2, w, h)
            p.fillRect(box, self.fill)
            p.setPen(self.color)
            p.drawText(box, int(Qt.AlignmentFlag.AlignCenter), text)
        p.restore()


class RectLayer:
    """A set of rectangles on a view box, replaced as a whole (window outlines, padding margins)."""

    def __init__(self, vb: pg.ViewBox):
        self.vb = vb
        self.items: list = []

    def clear(self) -> None:
        for it in self.items:
            self.vb.removeItem(it)
        self.items = []

    def add(self, item) -> None:
        self.vb.addItem(item)
        self.items.append(item)

    def rects(self, rects: Iterable[Rect], pen: QPen, brush: Optional[QBrush] = None, z: float = 15) -> None:
        for r in rects:
            self.add(rect_item(QRectF(r.x0, r.y0, r.width, r.height), pen, brush, z))

    def outlines(self, rects: Iterable[Rect], pen: QPen, z: float = 15) -> None:
        """Many rectangles' outlines as one curve item (every window of a block: one item, not hundreds)."""
        xs, ys = [], []
        for r in rects:
            corners = [(r.x0, r.y0), (r.x1, r.y0), (r.x1, r.y1), (r.x0, r.y1)]
            for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):  # four edges as point pairs
                xs += [ax, bx]
                ys += [ay, by]
        curve = pg.PlotCurveItem(np.array(xs, float), np.array(ys, float), pen=pen, connect="pairs")
        curve.setZValue(z)
        self.add(curve)

    def numbers(self, labels: list[tuple[str, float, float]], **style) -> None:
        """Many short labels as one :class:`NumberLabels` item (style: color, fill, point_size)."""
        self.add(NumberLabels(labels, **style))

    def text(self, text: str, x: float, y: float, color=(255, 255, 255), size: str = "8pt",
             anchor=(0.5, 0.5), fill=None) -> None:
        """A label at (x, y); ``fill`` (r, g, b, a) puts a box behind it so it reads on any colour."""
        t = pg.TextItem(html=f"<span style='font-size:{size};color:rgb{tuple(color)}'>{text}</span>", anchor=anchor,
                        fill=None if fill is None else pg.mkBrush(*fill))
        t.setPos(x, y)
        t.setZValue(30)
        self.add(t)


class ExtentView(OverlayView):
    """An :class:`OverlayView` that fits a given extent (the image plus the padded margin) instead of the image."""

    def __init__(self, colorbar: bool = False, parent=None):
        super().__init__(colorbar, parent)
        self.extent: tuple[int, int] = (0, 0)  # (h, w) in input pixels to fit; 0 = the image

    def fit(self) -> None:
        h = max(self.extent[0], self._img_size[0]) if self._img_size else 0
        w = max(self.extent[1], self._img_size[1]) if self._img_size else 0
        if h and w:
            self.vb.setRange(QRectF(0, 0, w, h), padding=0.02)
            self._fitted = True

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if getattr(self, "_fitted", False):
            QTimer.singleShot(0, self.fit)  # again once the view box has its new size (a tab shown late)

    def _limits(self) -> None:
        """Pan limits wide enough that a very wide or tall panel can still show the whole extent (a
        1.5x limit made the aspect lock crop the image instead of widening the view)."""
        h = max(self.extent[0], self._img_size[0] if self._img_size else 0)
        w = max(self.extent[1], self._img_size[1] if self._img_size else 0)
        if h and w:
            side = 4 * max(h, w)
            self.vb.setLimits(xMin=-side, xMax=w + side, yMin=-side, yMax=h + side)

    def set_input(self, img: np.ndarray) -> None:
        super().set_input(img)
        self._limits()
        self.fit()

    def set_extent(self, h: int, w: int) -> None:
        if (h, w) != self.extent:
            self.extent = (h, w)
            self._limits()
            self.fit()


class ImagePlot(QWidget):
    """A plot of one image with a word-wrapped title above it, labelled axes, rows downward, square pixels,
    and a colour bar with numbers. ``array`` keeps what is drawn (tests and export read it)."""

    def __init__(self, left: str, bottom: str, bar_label: str, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.title)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground(pg.mkColor(*BACKGROUND))
        lay.addWidget(self.glw, 1)
        self.plot = self.glw.addPlot(row=0, col=0)
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("left", left)
        self.plot.setLabel("bottom", bottom)
        self.img = pg.ImageItem()
        self.plot.addItem(self.img)
        self.bar = ColorBar()
        self.glw.addItem(self.bar, row=0, col=1)
        self.bar_label = bar_label  # what the colour bar's numbers are (said in the title)
        self.layer = RectLayer(self.plot.vb)
        self.array: Optional[np.ndarray] = None
        self.setMinimumSize(180, 160)
        style_plot(self.plot)

    def set_title(self, text: str) -> None:
        """The title, followed by what the colour bar's numbers are."""
        self.title.setText(f"{text}<br><span style='color:gray'>colour: {self.bar_label}</span>")

    def refresh_font(self) -> None:
        """Follow the application font (Ctrl+= / Ctrl+-): axes and colour bar numbers."""
        style_plot(self.plot)
        self.bar.refresh_font()

    def draw(self, values: np.ndarray, rect: QRectF, cmap: str, levels: tuple[float, float]) -> None:
        """Draw ``values`` (h, w) over ``rect`` in plot coordinates, coloured by colormap ``cmap`` over ``levels``."""
        self.array = np.asarray(values)
        self.img.setImage(self.array.astype(np.float32), levels=levels, autoLevels=False)
        self.img.setLookupTable(lookup_table(cmap, False))
        self.img.setRect(rect)
        self.bar.set(cmap, levels)
        self.plot.vb.autoRange(padding=0.04)

    def integer_ticks(self, n_x: int, n_y: int, x0: int = 0, y0: int = 0, step: int = 1) -> None:
        """Ticks on cell centres: columns x0 .. x0+n_x−1 and rows y0 .. y0+n_y−1 (cells centred on integers)."""
        self.plot.getAxis("bottom").setTicks([[(x, str(x)) for x in range(x0, x0 + n_x, step)]])
        self.plot.getAxis("left").setTicks([[(y, str(y)) for y in range(y0, y0 + n_y, step)]])

    def clear_image(self) -> None:
        self.array = None
        self.img.clear()
        self.layer.clear()
