"""Draw an :class:`attnviz.export.figure.Figure` with QPainter: one layout for PNG (QImage), SVG
(QSvgGenerator) and PDF (QPdfWriter), so the three formats show the same figure.

pyqtgraph's own exporters are not used (its SVG exporter fails on PySide6 ≥ 6.11, pyqtgraph issue
3485): text is drawn with ``drawText`` (SVG ``<text>``, PDF text with embedded fonts), every heat map
with ``drawImage`` of its pixels from :func:`attnviz.export.figure.tile_rgba` (an embedded image in SVG
and PDF). Heat maps are drawn at a whole number of output pixels per cell, unscaled, so a PNG's pixels
are exactly the array passed through the colormap.

Sizes: the figure has a natural size in pixels at 96 dpi (:func:`natural_size`); an export asks for a
pixel size (PNG, SVG) or a DPI (the natural size in inches times the DPI), and the layout scales to it.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
from PySide6.QtCore import QMarginsF, QPointF, QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPageSize, QPainter, QPdfWriter, QPen

from ...export.figure import ColorBar, Figure, Part, Tile, tile_rgba
from ...export.outputs import FigureRenderer
from ...export.writing import check_target, format_of, write_atomic
from ...session.display import format_ticks, tick_values
from ..widgets.overlay import lookup_table

# natural layout, in pixels at 96 dpi
MARGIN = 16
HEADER = 58
CELL_W, CELL_H = 372, 338  # one part: title + tiles + colour bar
PART_TITLE = 34
BAR_W = 72
GAP = 10
MIN_W = 600  # room for the title line of a one-part figure
TEXT = QColor(25, 25, 30)
SUBTLE = QColor(95, 95, 105)
QUERY = QColor(0, 170, 230)
PDF_DPI = 300


def ensure_app():
    """A Qt application for fonts and images; offscreen when there is no display (the headless CLI)."""
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QGuiApplication(["attnviz-export"])
    return app


def figure_columns(fig: Figure) -> int:
    n = max(len(fig.parts), 1)
    return fig.columns or (1 if n == 1 else 2 if n <= 4 else 3 if n <= 9 else 4)


def natural_size(fig: Figure) -> tuple[int, int]:
    """(width, height) in pixels at 96 dpi."""
    cols = figure_columns(fig)
    rows = math.ceil(max(len(fig.parts), 1) / cols)
    return max(2 * MARGIN + cols * CELL_W, MIN_W), MARGIN + HEADER + rows * CELL_H + MARGIN


def pixel_size(fig: Figure, size: Optional[tuple[int, int]] = None, dpi: Optional[float] = None) -> tuple[int, int]:
    """The output size in pixels: ``size`` as given, else the natural size scaled to ``dpi`` (default 96)."""
    if size is not None:
        w, h = int(size[0]), int(size[1])
        if w < 16 or h < 16 or w > 20000 or h > 20000:
            raise ValueError(f"figure size {w}x{h} is outside 16..20000 pixels")
        return w, h
    w, h = natural_size(fig)
    f = (dpi or 96.0) / 96.0
    if not 0.1 <= f <= 50:
        raise ValueError(f"DPI {dpi} is outside 10..4800")
    return max(16, round(w * f)), max(16, round(h * f))


# -- drawing ------------------------------------------------------------------------------------


class _Luts:
    def __init__(self):
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = lookup_table(name, False)  # (256, 4) uint8
        return self._cache[name]


def _font(px: float, bold: bool = False) -> QFont:
    f = QFont("DejaVu Sans")
    f.setStyleHint(QFont.StyleHint.SansSerif)
    f.setPixelSize(max(1, round(px)))
    f.setBold(bold)
    return f


def qimage_of(rgba: np.ndarray) -> QImage:
    """(h, w, 4) uint8 RGBA -> a QImage owning a copy of the pixels."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def draw_figure(p: QPainter, fig: Figure, width: int, height: int, luts: Optional[_Luts] = None,
                placed: Optional[list] = None) -> None:
    """Lay out and draw ``fig`` on ``p`` over (0, 0)–(width, height) device pixels. ``placed`` (a list)
    receives (part name, tile index, QRectF, cell) of every tile drawn unscaled, for tests."""
    luts = luts or _Luts()
    nat_w, nat_h = natural_size(fig)
    k = min(width / nat_w, height / nat_h)
    ox, oy = (width - nat_w * k) / 2, (height - nat_h * k) / 2
    p.fillRect(QRectF(0, 0, width, height), QColor(255, 255, 255))
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
    # header: title and subtitle
    p.setPen(TEXT)
    x0, y0 = ox + MARGIN * k, oy + MARGIN * k
    text_w = (nat_w - 2 * MARGIN) * k
    p.setFont(_fitting_font(fig.title, text_w, 15 * k, 10 * k, bold=True))
    _text(p, QRectF(x0, y0, text_w, 20 * k), fig.title)
    p.setPen(SUBTLE)
    p.setFont(_font(10 * k))
    p.drawText(QRectF(x0, y0 + 21 * k, text_w, 30 * k),
               int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap), fig.subtitle)
    cols = figure_columns(fig)
    x0 += (nat_w - 2 * MARGIN - cols * CELL_W) / 2 * k  # the parts centred under the title
    for i, part in enumerate(fig.parts):
        r, c = divmod(i, cols)
        cell = QRectF(x0 + c * CELL_W * k, oy + (MARGIN + HEADER + r * CELL_H) * k, CELL_W * k, CELL_H * k)
        _draw_part(p, part, cell, k, luts, placed)


def _fitting_font(text: str, width: float, largest: float, smallest: float, bold: bool = False) -> QFont:
    """The largest font from ``largest`` down to ``smallest`` pixels in which ``text`` fits ``width``."""
    px = largest
    while px > smallest:
        f = _font(px, bold)
        if QFontMetricsF(f).horizontalAdvance(text) <= width:
            return f
        px *= 0.92
    return _font(smallest, bold)


def _text(p: QPainter, rect: QRectF, text: str, flags=Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter) -> None:
    """One line, elided to the rectangle's width."""
    fm = QFontMetricsF(p.font())
    p.drawText(rect, int(flags), fm.elidedText(text, Qt.TextElideMode.ElideRight, rect.width()))


def _draw_part(p: QPainter, part: Part, cell: QRectF, k: float, luts: _Luts, placed) -> None:
    pad = 6 * k
    p.setPen(TEXT)
    p.setFont(_font(11.5 * k, bold=True))
    title = QRectF(cell.x() + pad, cell.y(), cell.width() - 2 * pad, PART_TITLE * k)
    p.drawText(title, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
               part.title)
    bar_w = BAR_W * k if part.colorbar is not None else 0
    area = QRectF(cell.x() + pad, cell.y() + PART_TITLE * k, cell.width() - 2 * pad - bar_w,
                  cell.height() - PART_TITLE * k - GAP * k)
    n = max(len(part.tiles), 1)
    cols = part.columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sw, sh = area.width() / cols, area.height() / rows
    cap_px = (9 if n > 4 else 10) * k
    drawn = []
    for t, tile in enumerate(part.tiles):
        r, c = divmod(t, cols)
        slot = QRectF(area.x() + c * sw, area.y() + r * sh, sw, sh)
        drawn.append(_draw_tile(p, part.name, t, tile, slot, cap_px, k, luts, placed))
    if part.colorbar is not None:
        top = min(r.top() for r in drawn) if drawn else area.y()
        bottom = max(r.bottom() for r in drawn) if drawn else area.bottom()
        bar = QRectF(area.right() + 8 * k, top, 12 * k, max(bottom - top, 20 * k))
        _draw_colorbar(p, part.colorbar, bar, k, luts)


def _draw_tile(p: QPainter, part: str, index: int, tile: Tile, slot: QRectF, cap_px: float, k: float,
               luts: _Luts, placed) -> QRectF:
    """Caption above, the image below, as large as fits at a whole number of pixels per unit. Returns
    where the image went."""
    gap = 3 * k
    cap_h = cap_px * 1.45 if tile.caption else 0
    axes = bool(tile.xlabel or tile.ylabel)
    left, below = (18 * k, 13 * k) if axes else (0.0, 0.0)  # room for row and column numbers
    box = QRectF(slot.x() + gap + left, slot.y() + cap_h, slot.width() - 2 * gap - left,
                 slot.height() - cap_h - 2 * gap - below)
    rows, cols = tile.shape
    lut = luts(tile.colormap) if tile.values is not None else None
    fit = min(box.width() / cols, box.height() / rows)
    cell = int(math.floor(fit))
    if cell >= 1:
        img = qimage_of(tile_rgba(tile, cell, lut))
        w, h = cols * cell, rows * cell
        x, y = round(box.x() + (box.width() - w) / 2), round(box.y())
        target = QRectF(x, y, w, h)
        p.drawImage(QPointF(x, y), img)
        if placed is not None:
            placed.append((part, index, target, cell))
    else:  # larger than the space: drawn scaled down, smoothly
        w, h = cols * fit, rows * fit
        target = QRectF(box.x() + (box.width() - w) / 2, box.y(), w, h)
        p.save()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(target, qimage_of(tile_rgba(tile, 1, lut)))
        p.restore()
        cell = fit
    if tile.caption:
        p.setPen(TEXT)
        p.setFont(_font(cap_px))
        _text(p, QRectF(slot.x() + gap, target.y() - cap_h, slot.width() - 2 * gap, cap_h), tile.caption,
              Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter)
    if axes:
        _draw_axes(p, tile, target, rows, cols, k)
    if tile.marker is not None:
        r, c, size = tile.marker
        unit = cell * (tile.token_px if tile.rgb is not None and tile.values is not None else 1)
        pen = QPen(QUERY)
        pen.setWidthF(max(1.5, 2 * k))
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(QRectF(target.x() + c * unit, target.y() + r * unit, size * unit, size * unit))
    pen = QPen(QColor(150, 150, 158))
    pen.setWidthF(1.0)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(target.adjusted(-1.0, -1.0, 1.0, 1.0))  # a frame just outside: every map pixel stays its colour
    return target


def _draw_axes(p: QPainter, tile: Tile, target: QRectF, rows: int, cols: int, k: float) -> None:
    """Row numbers left of the tile, column numbers below it (at most ~12 of each); the caption names them."""
    p.setPen(SUBTLE)
    p.setFont(_font(8 * k))
    fm = QFontMetricsF(p.font())
    for n, along in ((rows, "rows"), (cols, "cols")):
        step = max(1, math.ceil(n / 12))
        for i in range(0, n, step):
            if along == "rows":
                y = target.y() + (i + 0.5) * target.height() / n
                p.drawText(QRectF(target.x() - 18 * k, y - 6 * k, 15 * k, 12 * k),
                           int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), str(i))
            else:
                x = target.x() + (i + 0.5) * target.width() / n
                p.drawText(QRectF(x - 10 * k, target.bottom() + 1.5 * k, 20 * k, fm.height()),
                           int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), str(i))


def _draw_colorbar(p: QPainter, bar: ColorBar, rect: QRectF, k: float, luts: _Luts) -> None:
    lut = luts(bar.colormap)[::-1]  # (256, 4): top of the bar is the high end
    strip = np.ascontiguousarray(np.repeat(lut[:, None, :], 2, axis=1))  # (256, 2, 4)
    p.save()
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
    p.drawImage(rect, qimage_of(strip))
    p.restore()
    pen = QPen(QColor(120, 120, 128))
    pen.setWidthF(max(0.75, 0.75 * k))
    p.setPen(pen)
    p.drawRect(rect)
    lo, hi = bar.levels
    p.setFont(_font(9 * k))
    fm = QFontMetricsF(p.font())
    ticks = tick_values(lo, hi)  # round numbers, both ends: the same scale as the panels' colour bars
    for v, text in zip(ticks, format_ticks(ticks, bar.scale)):
        y = rect.bottom() - (v - lo) / (hi - lo if hi > lo else 1) * rect.height()
        p.setPen(pen)
        p.drawLine(QPointF(rect.right(), y), QPointF(rect.right() + 3 * k, y))
        p.setPen(TEXT)
        p.drawText(QPointF(rect.right() + 5 * k, y + fm.ascent() / 2 - 1), text)
    if bar.label:
        p.save()
        p.setPen(SUBTLE)
        p.setFont(_font(9 * k))
        p.translate(rect.right() + 52 * k, rect.center().y())
        p.rotate(90)
        w = rect.height()
        _text(p, QRectF(-w / 2, -6 * k, w, 12 * k), bar.label, Qt.AlignmentFlag.AlignCenter)
        p.restore()


# -- formats --------------------------------------------------------------------------------------


def to_qimage(fig: Figure, size: Optional[tuple[int, int]] = None, dpi: Optional[float] = None,
              placed: Optional[list] = None) -> QImage:
    ensure_app()
    w, h = pixel_size(fig, size, dpi)
    img = QImage(w, h, QImage.Format.Format_RGB32)
    if dpi:
        img.setDotsPerMeterX(round(dpi / 0.0254))
        img.setDotsPerMeterY(round(dpi / 0.0254))
    p = QPainter(img)
    try:
        draw_figure(p, fig, w, h, placed=placed)
    finally:
        p.end()
    return img


def to_rgb(fig: Figure, size: Optional[tuple[int, int]] = None, dpi: Optional[float] = None) -> np.ndarray:
    """(h, w, 3) uint8 RGB pixels of the figure (animation frames)."""
    img = to_qimage(fig, size, dpi).convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)  # (h, bytes per line)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


# Qt's PNG "quality" picks the zlib level (100 - quality, scaled to 0-9). At 50 a figure encodes in half
# the time of the default (measured: 11 vs 22 ms for a 600x428 overlay) for 0.3 % more bytes; a folder
# export spends most of its drawing time here.
PNG_QUALITY = 50


def _write_png(fig: Figure, tmp: str, size, dpi) -> None:
    img = to_qimage(fig, size, dpi)
    if not img.save(tmp, "PNG", PNG_QUALITY):
        raise OSError(f"{tmp}: Qt could not write the PNG")


def _write_svg(fig: Figure, tmp: str, size, dpi) -> None:
    from PySide6.QtCore import QRect
    from PySide6.QtSvg import QSvgGenerator

    ensure_app()
    w, h = pixel_size(fig, size, dpi)
    gen = QSvgGenerator()
    gen.setFileName(tmp)
    gen.setSize(QSize(w, h))
    gen.setViewBox(QRect(0, 0, w, h))
    gen.setResolution(round(dpi or 96))
    gen.setTitle(fig.title)
    gen.setDescription(fig.subtitle)
    p = QPainter()
    if not p.begin(gen):
        raise OSError(f"{tmp}: Qt could not start the SVG")
    try:
        draw_figure(p, fig, w, h)
    finally:
        p.end()


def _write_pdf(fig: Figure, tmp: str, size, dpi) -> None:
    ensure_app()
    nat_w, nat_h = pixel_size(fig, size, None) if size is not None else natural_size(fig)
    res = int(dpi or PDF_DPI)
    writer = QPdfWriter(tmp)
    writer.setResolution(res)
    writer.setTitle(fig.title)
    writer.setCreator("attnviz")
    writer.setPageSize(QPageSize(QSizeF(nat_w / 96.0, nat_h / 96.0), QPageSize.Unit.Inch, "attnviz figure",
                                 QPageSize.SizeMatchPolicy.ExactMatch))
    writer.setPageMargins(QMarginsF(0, 0, 0, 0))
    p = QPainter()
    if not p.begin(writer):
        raise OSError(f"{tmp}: Qt could not start the PDF")
    try:
        w, h = p.device().width(), p.device().height()
        draw_figure(p, fig, w, h)
    finally:
        p.end()


WRITERS = {".png": _write_png, ".svg": _write_svg, ".pdf": _write_pdf}


def save_figure(fig: Figure, path: str | os.PathLike, size: Optional[tuple[int, int]] = None,
                dpi: Optional[float] = None, force: bool = False) -> None:
    """Write ``fig`` as PNG, SVG or PDF (from the suffix), atomically."""
    fmt = format_of(path)
    if fmt not in WRITERS:
        raise ValueError(f"{path}: a figure is written as .png, .svg or .pdf, not {fmt}")
    check_target(path, force)
    write_atomic(path, lambda tmp: WRITERS[fmt](fig, tmp, size, dpi), force)


def render_frames(figs, size: Optional[tuple[int, int]] = None, dpi: Optional[float] = None) -> list[np.ndarray]:
    """(h, w, 3) uint8 RGB of every figure, all at the first one's pixel size (animation frames)."""
    px = pixel_size(figs[0], size, dpi)
    return [to_rgb(f, px) for f in figs]


# what attnviz.export.outputs draws figures with (the export package itself has no Qt)
RENDERER = FigureRenderer(save_figure, render_frames)
