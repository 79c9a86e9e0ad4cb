"""An image with a heat map over it: the building block of the image panel and the map tiles.

Everything is in input-pixel coordinates (y down): the input image fills (0, 0)–(W, H), a map on a
token grid is stretched over the pixels its tokens cover, outlines mark the query and hovered
tokens. Items are created once and updated with ``setImage``/``setRect`` (no rebuilding per change);
what did not change is not touched (the lookup table, the rectangle, the colour bar), the map is coloured
once in numpy (:func:`~attnviz.qt.widgets.colorize.colorize`), and both images are cached as device
pixmaps, so a repaint of an unchanged view is a blit.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

from ...session.display import display_values, upsample
from .colorbar import ColorBar
from .colorize import colorize, premultiplied

QUERY_PEN = QColor(80, 220, 255)
HOVER_PEN = QColor(255, 255, 255)


_LUTS: dict[tuple[str, bool], np.ndarray] = {}


def lookup_table(name: str, alpha_ramp: bool) -> np.ndarray:
    """(256, 4) uint8 colours of a colormap; with ``alpha_ramp`` the opacity rises with the value
    (attention-as-alpha: low attention lets the image show through). Built once per (name, ramp);
    the caller gets its own copy."""
    key = (name, alpha_ramp)
    if key not in _LUTS:
        lut = pg.colormap.get(name).getLookupTable(nPts=256, alpha=True).copy()  # (256, 4)
        if alpha_ramp:
            lut[:, 3] = np.linspace(0, 255, 256).astype(np.uint8)
        lut.setflags(write=False)
        _LUTS[key] = lut
    return _LUTS[key].copy()


def shared_lookup_table(name: str, alpha_ramp: bool) -> np.ndarray:
    """The cached (256, 4) table itself, read-only: for colouring many tiles without a copy each."""
    lookup_table(name, alpha_ramp)
    return _LUTS[(name, alpha_ramp)]


_SHARED: list[tuple[np.ndarray, QImage, np.ndarray]] = []  # (array, its QImage, the buffer) of recent inputs


class RGBAImageItem(pg.ImageItem):
    """An ImageItem for finished uint8 images, (h, w, 4) RGBA or (h, w, 3) RGB: kept as a premultiplied
    ARGB32 QImage, which Qt draws without converting it first (pyqtgraph's own RGBA8888 image is converted
    on every paint). An RGB array is converted once for every view that shows it (the network's input
    is in the image panel and in each map tile); anything else is rendered by pyqtgraph as usual."""

    def render(self) -> None:
        img = self.image
        if img is None or img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
            return super().render()
        if img.shape[2] == 4:
            self.qimage, self._qbuffer = premultiplied(img)
        else:
            hit = next((q for q in _SHARED if q[0] is img), None)
            if hit is None:
                rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=-1)  # (h, w, 4)
                hit = (img, *premultiplied(rgba))
                _SHARED[:] = [hit] + _SHARED[:2]
            self.qimage, self._qbuffer = hit[1], hit[2]
        self._renderRequired = False
        self._unrenderable = False


def cached(item: QGraphicsItem) -> QGraphicsItem:
    """Keep ``item`` painted as a pixmap in device pixels: repaints blit it until the item changes."""
    item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    return item


def _outline(color: QColor, width: float, style=Qt.PenStyle.SolidLine) -> QGraphicsRectItem:
    item = QGraphicsRectItem()
    pen = QPen(color)
    pen.setCosmetic(True)
    pen.setWidthF(width)
    pen.setStyle(style)
    item.setPen(pen)
    item.setZValue(20)
    item.setVisible(False)
    return item


class OverlayView(pg.GraphicsLayoutWidget):
    """Input image + heat map + patch grid + query/hover outlines. Emits clicks and hovers in input pixels."""

    sigClicked = Signal(float, float)  # (y, x) input pixels
    sigHovered = Signal(float, float)  # (y, x); (-1, -1) when the mouse leaves the image

    def __init__(self, colorbar: bool = False, parent=None):
        super().__init__(parent)
        self.setBackground(pg.mkColor(30, 30, 34))
        self.vb = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.vb.setDefaultPadding(0.01)
        self.image = cached(RGBAImageItem())
        self.heat = cached(RGBAImageItem())
        self.heat.setZValue(5)
        self.grid = pg.PlotCurveItem(pen=pg.mkPen(255, 255, 255, 60, width=1), connect="pairs")
        self.grid.setZValue(10)
        self.query = _outline(QUERY_PEN, 2.5)
        self.token = _outline(QUERY_PEN, 1.2, Qt.PenStyle.DashLine)
        self.hover = _outline(HOVER_PEN, 1.5)
        for it in (self.image, self.heat, self.grid, self.query, self.token, self.hover):
            self.vb.addItem(it)
        self.bar: Optional[ColorBar] = None
        if colorbar:
            self.bar = ColorBar()
            self.addItem(self.bar, row=0, col=1)
        self.values: Optional[np.ndarray] = None  # what is coloured (after scale), for tests and export
        self.levels: tuple[float, float] = (0.0, 1.0)
        self._img_size = (0, 0)
        self._heat_rect: Optional[tuple[int, int, int, int]] = None  # covered pixels and the image's size
        self._opacity: Optional[float] = None
        self._grid_key: Optional[tuple] = None  # (visible, patch, grid) the grid lines were drawn for
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)
        self.vb.sigResized.connect(self._vb_resized)  # the layout resizes the box after the widget

    # -- content --------------------------------------------------------------------------------
    def set_input(self, img: np.ndarray) -> None:
        """The network input (h, w, 3) uint8; the view fits it when its size changes."""
        size = img.shape[:2]
        if self.image.image is not img:
            self.image.setImage(img, autoLevels=False, levels=(0, 255))
        if size != self._img_size:
            self._img_size = size
            self.vb.setLimits(xMin=-size[1] * 0.5, xMax=size[1] * 1.5, yMin=-size[0] * 0.5, yMax=size[0] * 1.5)
            self.fit()

    def fit(self) -> None:
        """Show the whole input; the view keeps fitting it as the panel resizes until the user zooms or pans."""
        h, w = self._img_size
        if h and w:
            self.vb.setRange(QRectF(0, 0, w, h), padding=0.01)
            self._fitted = True

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if getattr(self, "_fitted", False):
            self.fit()

    def _vb_resized(self, *_args) -> None:
        if getattr(self, "_fitted", False):
            self.fit()

    def mouseDoubleClickEvent(self, ev) -> None:
        """Double-click fits the image (the first click of it already picked the query)."""
        self.fit()
        ev.accept()

    def wheelEvent(self, ev) -> None:
        self._fitted = False  # the user zooms: stop re-fitting on resize
        super().wheelEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        if ev.buttons():
            self._fitted = False  # a drag pans
        super().mouseMoveEvent(ev)

    def set_map(self, values: Optional[np.ndarray], token_px: int, lo_hi: tuple[float, float], scale: str,
                colormap: str, alpha_mode: bool, opacity: float, smooth: bool,
                where: Optional[np.ndarray] = None) -> None:
        """Colour a (h, w) token-grid map over the pixels it covers (h·token_px × w·token_px); with a bool
        ``where`` (h, w) only those tokens are coloured (Swin: the query's window), the rest left clear."""
        if values is None:
            self.values = None
            self.heat.clear()
            self._heat_rect = None
            return
        lo, hi = lo_hi
        top = 10 ** hi if scale == "log" else None
        shown = display_values(values, scale, top)  # (h, w)
        self.values, self.levels = shown, (lo, hi)
        h, w = shown.shape
        factor = max(1, min(token_px, 8)) if smooth else 1
        drawn = shown if where is None else np.where(where, shown, np.nan)  # NaN is drawn transparent
        if where is not None:
            smooth, factor = False, 1  # a window edge stays sharp
        rgba = colorize(upsample(drawn, factor, smooth), (lo, hi), shared_lookup_table(colormap, alpha_mode))
        self.heat.setImage(rgba, autoLevels=False, levels=None)  # (h·f, w·f, 4)
        rect = (h * token_px, w * token_px, rgba.shape[0], rgba.shape[1])  # a new image shape needs setRect too
        if self._heat_rect != rect:
            self._heat_rect = rect
            self.heat.setRect(QRectF(0, 0, w * token_px, h * token_px))
        if self._opacity != opacity:
            self._opacity = opacity
            self.heat.setOpacity(opacity)
        if self.bar is not None:
            self.bar.set(colormap, (lo, hi), scale)

    def refresh_font(self) -> None:
        """The application font changed (Ctrl+=): the colour bar's numbers follow it."""
        if self.bar is not None:
            self.bar.refresh_font()

    def set_grid(self, visible: bool, patch: int, grid: tuple[int, int]) -> None:
        key = (visible, patch, tuple(grid))
        if key == self._grid_key:
            return
        self._grid_key = key
        if not visible or patch <= 0:
            self.grid.setVisible(False)
            return
        gh, gw = grid
        H, W = gh * patch, gw * patch
        xs, ys = [], []
        for c in range(gw + 1):
            xs += [c * patch, c * patch]
            ys += [0, H]
        for r in range(gh + 1):
            xs += [0, W]
            ys += [r * patch, r * patch]
        self.grid.setData(np.array(xs, float), np.array(ys, float))
        self.grid.setVisible(True)

    @staticmethod
    def _place(item: QGraphicsRectItem, cell: Optional[tuple[int, int]], size: int) -> None:
        if cell is None:
            item.setVisible(False)
            return
        item.setRect(QRectF(cell[1] * size, cell[0] * size, size, size))
        item.setVisible(True)

    def set_query(self, patch: Optional[tuple[int, int]], patch_px: int,
                  token: Optional[tuple[int, int]] = None, token_px: int = 0) -> None:
        """Outline the query patch, and (Swin, later stages) the merged token that covers it."""
        self._place(self.query, patch, patch_px)
        self._place(self.token, token if token_px and token_px != patch_px else None, token_px)

    def set_hover(self, patch: Optional[tuple[int, int]], patch_px: int) -> None:
        self._place(self.hover, patch, patch_px)

    # -- mouse ----------------------------------------------------------------------------------
    def _clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.double():
            return  # handled by mouseDoubleClickEvent
        p = self.vb.mapSceneToView(ev.scenePos())
        self.sigClicked.emit(p.y(), p.x())

    def _moved(self, pos) -> None:
        if not self.vb.sceneBoundingRect().contains(pos):
            self.sigHovered.emit(-1.0, -1.0)
            return
        p = self.vb.mapSceneToView(pos)
        h, w = self._img_size
        if 0 <= p.y() < h and 0 <= p.x() < w:
            self.sigHovered.emit(p.y(), p.x())
        else:
            self.sigHovered.emit(-1.0, -1.0)

    def leaveEvent(self, ev) -> None:
        super().leaveEvent(ev)
        self.sigHovered.emit(-1.0, -1.0)

