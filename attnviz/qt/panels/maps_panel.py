"""Maps panel: the query's attention, rollout, attention flow, gradient rollout and class relevance,
side by side or one at a time, with the options they share.

Each tile remembers what it shows (the product object, colormap and scale) and is redrawn only when
that changed: a block or head change recolours the attention tile alone (rollout, flow and relevance
depend on the query, the options and the class, not on the block or head).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QWidget)

from ...analysis.options import FUSIONS, MixOptions
from ...session.display import format_ticks, levels, span_levels
from ...session.products import MAP_PRODUCTS, TokenMap, Unavailable
from ...session.shown import shown_map
from ...session.view_state import METHOD_NAMES, METHODS
from ..widgets.flow import FlowLayout, labelled
from ..widgets.overlay import OverlayView
from .base import Panel


class MapTile(QWidget):
    """One method: a caption (or the reason it does not apply) over the image with its map."""

    def __init__(self, method: str, on_pick):
        super().__init__()
        self.method = method
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.caption = QLabel(METHOD_NAMES[method])
        self.caption.setWordWrap(True)
        self.view = OverlayView()
        self.view.setMinimumSize(140, 140)
        self.view.sigClicked.connect(lambda _y, _x: on_pick(method))
        lay.addWidget(self.caption, 0, 0)
        lay.addWidget(self.view, 1, 0)
        self.key: object = None  # what the view shows now; the same key is not drawn again
        self.text = ""
        self.selected: object = None

    def set_caption(self, text: str, selected: bool) -> None:
        if text != self.text:
            self.text = text
            self.caption.setText(text)
        if selected != self.selected:  # a style sheet change restyles the label: only when it changes
            self.selected = selected
            self.caption.setStyleSheet("font-weight:600;color:#50dcff" if selected else "")


class MapsPanel(Panel):
    title = "Maps"
    help_text = ("Attention of one block says little about what reaches the output. <b>Rollout</b> multiplies the "
                 "blocks' attention, each mixed with the identity for the residual connection (weight α); "
                 "<b>flow</b> treats the blocks as a network of pipes and computes the maximum flow from the query "
                 "to every patch (Abnar &amp; Zuidema 2020). <b>Gradient rollout</b> and <b>relevance</b> (Chefer et "
                 "al. 2021) weight attention by its gradient for one class. <i>Fusion</i> says how a block's heads "
                 "become one matrix, <i>discard</i> drops each row's weakest patch weights, <i>blocks</i> limits the "
                 "range mixed. Each tile is coloured from 0 to its maximum, except flow, whose values lie close together: "
                 "it is coloured from its own minimum to its maximum (both numbers are in its caption). Click a tile to "
                 "show it in the Image panel; <i>one at a time</i> shows only that one.")
    reads = ("block", "head", "query", "method", "options", "class_idx", "colormap", "scale")
    default_size = (700, 460)
    defer_block_slider = False  # the app sets it: the slider is built after the first paint

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        v = session.view
        row = FlowLayout()  # wraps rather than squeezing the controls (narrow dock, larger text)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setToolTip("α: weight of the residual connection in Ã = (1−α)·A + α·I")
        self.fusion = QComboBox()
        self.fusion.addItems(list(FUSIONS))
        self.fusion.setToolTip("How the heads of a block become one matrix")
        self.discard = QDoubleSpinBox()
        self.discard.setRange(0.0, 0.95)
        self.discard.setSingleStep(0.05)
        self.discard.setToolTip("Fraction of each row's lowest patch weights dropped before renormalising")
        self.blocks = None  # superqt's range slider (Qt has no two-handled one): see ensure_block_slider
        self.blocks_slot = QLabel("all")  # holds its place until then
        self.blocks_slot.setMinimumWidth(160)
        self.one = QCheckBox("one at a time")
        self.one.setToolTip("Show only the map selected in the Image panel, large")
        blocks_box = labelled("blocks", self.blocks_slot)
        for w in (labelled("α", self.alpha), labelled("fusion", self.fusion), labelled("discard", self.discard),
                  blocks_box, self.one):
            row.addWidget(w)
        self._controls = blocks_box.layout()  # where the range slider takes the placeholder's place
        self.controls_row(row)
        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("attention flow %v / %m sinks")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(lambda: self._cancel())
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.cancel)
        self.progress_row = QWidget()
        self.progress_row.setLayout(prog)
        self.progress_row.setVisible(False)
        self.body.addWidget(self.progress_row)
        self.grid = QGridLayout()
        self.tiles = {m: MapTile(m, lambda m: setattr(v, "method", m)) for m in METHODS}
        for i, t in enumerate(self.tiles.values()):
            self.grid.addWidget(t, i // 3, i % 3)
        self.body.addLayout(self.grid, 1)
        self.arrays: dict[str, object] = {}  # method -> the (h, w) map drawn, or the Unavailable reason
        self.levels: dict[str, tuple[float, float]] = {}  # method -> the colour range of its tile
        self._synced: object = None  # (options, depth) the controls show
        self._layout_key: object = None  # (one at a time, method) the tiles are arranged for
        self._defer_slow = False  # just after a new capture (asynchronous worker): slow maps wait for the first paint
        self._defer_timer = QTimer(self)
        self._defer_timer.setSingleShot(True)
        self._defer_timer.setInterval(0)  # fires after the paint events already posted
        self._defer_timer.timeout.connect(self._request_slow)

        for w in (self.alpha, self.discard):
            w.valueChanged.connect(lambda _x: self._options_changed())
        if not self.defer_block_slider:
            self.ensure_block_slider()
        self.fusion.currentIndexChanged.connect(lambda _i: self._options_changed())
        self.one.toggled.connect(lambda _on: self.schedule())
        session.products.ready.connect(self._ready)
        v.signal("hover").connect(lambda *_: self.show_hover())
        session.products.started.connect(self._started)
        session.products.progress.connect(self._progress)

    def ensure_block_slider(self) -> None:
        """Build the block-range slider. Importing superqt costs about 0.3 s (qtpy imports all of QtGui and
        QtOpenGL), so the app builds it once the first map is painted (``defer_block_slider``)."""
        if self.blocks is not None:
            return
        from superqt import QLabeledRangeSlider

        self.blocks = QLabeledRangeSlider(Qt.Orientation.Horizontal)
        self.blocks.setMinimumWidth(160)
        self.blocks.setToolTip("Blocks the maps mix, first to last")
        self._controls.replaceWidget(self.blocks_slot, self.blocks)
        self.blocks_slot.deleteLater()
        self.blocks_slot = None
        self._synced = None
        if self.session.capture is not None:
            self._sync()
        self.blocks.valueChanged.connect(lambda _x: self._options_changed())

    def _options_changed(self) -> None:
        o = self.session.view.options
        first, last = (o.first_block, o.last_block) if self.blocks is None else map(int, self.blocks.value())
        try:
            opts = MixOptions(alpha=round(self.alpha.value(), 4), fusion=self.fusion.currentText(),
                              discard_ratio=round(self.discard.value(), 4), first_block=first, last_block=last)
        except ValueError as e:
            self.session.report(e)
            return
        self.session.view.options = opts

    def _sync(self) -> None:
        v = self.session.view
        o = v.options
        n = v.limits.num_blocks
        if self._synced == (o, n):
            return
        self._synced = (o, n)
        for w, val in ((self.alpha, o.alpha), (self.discard, o.discard_ratio)):
            w.blockSignals(True)
            w.setValue(val)
            w.blockSignals(False)
        first, last = o.first_block % n, (n - 1 if o.last_block is None else o.last_block % n)
        if self.blocks is None:
            self.blocks_slot.setText(f"{first}–{last}")
        else:
            self.blocks.blockSignals(True)
            self.blocks.setRange(0, max(n - 1, 0))
            self.blocks.setValue((first, last))
            self.blocks.blockSignals(False)
        self.fusion.blockSignals(True)
        self.fusion.setCurrentText(o.fusion)
        self.fusion.blockSignals(False)

    def _cancel(self) -> None:
        self.session.products.cancel("flow")
        self.progress_row.setVisible(False)
        self.tiles["flow"].set_caption("Attention flow — cancelled (change a setting or click to compute again)",
                                       self.session.view.method == "flow")

    def _started(self, name: str) -> None:
        if name == "flow":
            self.progress.setRange(0, 0)
            self.progress_row.setVisible(True)

    def _progress(self, name: str, done: int, total: int) -> None:
        if name == "flow":
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress_row.setVisible(done < total)

    def _ready(self, name: str) -> None:
        if name == "flow":
            self.progress_row.setVisible(False)
        if name in MAP_PRODUCTS:
            self.schedule()

    def show_hover(self) -> None:
        """The hovered patch outlined on every tile (linked with the Image panel)."""
        v, g = self.session.view, self.session.geometry
        if g is None:
            return
        cell = (v.hover.row, v.hover.col) if v.hover else None
        for t in self.tiles.values():
            t.view.set_hover(cell, g.patch_size)

    def on_capture(self) -> None:
        img = self.session.doc.input_image
        for t in self.tiles.values():
            t.view.set_input(img)
            t.key = None
        # the first paint of a new capture comes before rollout, flow and relevance start on the worker,
        # which would otherwise compete with it for the interpreter (numba's import, the backward pass)
        self._defer_slow = not self.session.worker.synchronous

    def on_font_change(self) -> None:
        for t in self.tiles.values():
            t.view.refresh_font()

    def _request_slow(self) -> None:
        self._defer_slow = False
        self.schedule()

    def refresh(self) -> None:
        s, v, g = self.session, self.session.view, self.session.geometry
        self._sync()
        one = self.one.isChecked()
        if self._layout_key != (one, v.method):
            self._layout_key = (one, v.method)
            for m, tile in self.tiles.items():
                tile.setVisible(not one or m == v.method)
        if self._defer_slow and not self._defer_timer.isActive():
            self._defer_timer.start()
        for m, tile in self.tiles.items():
            if one and m != v.method:
                continue
            if m == "attention":
                qh = s.products.get("query_heads")
                key = (qh, v.head, v.colormap, v.scale)
            else:
                r = s.products.cached(m) if self._defer_slow else s.products.get(m)
                key = (r, v.colormap, v.scale, g.patch_size)
            title = tile.text
            if tile.key is None or tile.key[0] is not key[0] or tile.key[1:] != key[1:]:  # the product by identity
                tile.key = key
                title = self._draw_tile(m, tile)
            tile.set_caption(title, m == v.method)

    def _draw_tile(self, m: str, tile: MapTile) -> str:
        """Draw one method's tile; returns its caption."""
        s, v, g = self.session, self.session.view, self.session.geometry
        where = None
        span = ""
        if m == "attention":
            shown = shown_map(s, "attention", "map")
            values, px, title, note, where = shown.values, shown.token_px, shown.title, shown.note, shown.window
            lv = shown.levels
        else:
            r = tile.key[0]
            px = g.patch_size
            if r is None:
                values, title, note = None, METHOD_NAMES[m], "computing…"
            elif isinstance(r, Unavailable):
                values, title, note = None, METHOD_NAMES[m], r.reason
            else:
                assert isinstance(r, TokenMap)
                values, title, note = r.map, f"{METHOD_NAMES[m]} {r.note}", ""
            lv = (0.0, 1.0)
            if values is not None:
                if m == "flow":  # flow is nearly even over the patches: its own min..max gets the colours
                    lv = span_levels(values, v.scale)
                    lo, hi = format_ticks([lv[0], lv[1]], v.scale)
                    span = f" · colours from min {lo} to max {hi}"
                else:
                    lv = levels(values, v.scale)
        self.arrays[m] = values if values is not None else Unavailable(note)
        self.levels[m] = lv
        tile.view.set_map(values, px, lv, v.scale, v.colormap, False, 0.75, False, where)
        return title + span + (f" — <i>{note}</i>" if note else "")
