"""Statistics panel: per-head mean attention distance, entropy and prefix share against depth (this image
or a folder's running means with their spread), and the selected block's token norms with outliers."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QTabWidget, QVBoxLayout,
                               QWidget)

from ...analysis.stats import OUTLIER_K, OUTLIER_RATIO, HeadStats, TokenNorms
from ...session import stats_products  # noqa: F401 - registers the token_norms product
from ...session.folder_stats import FolderRunner, FolderStats
from ...session.products import Unavailable
from ..widgets.choices import combo, select_data
from ..widgets.colorbar import ColorBar
from ..widgets.fonts import plot_font, style_plot
from ..widgets.overlay import lookup_table
from .base import Panel

BACKGROUND = pg.mkColor(30, 30, 34)
RING = pg.mkPen(80, 220, 255, width=2.5)
BAND = pg.mkBrush(80, 220, 255, 28)
# the three statistics of analysis.stats.HeadStats: field, axis label, plot title
PLOTS = (
    ("mean_distance", "distance (input px)", "Mean attention distance"),
    ("entropy", "entropy (nats)", "Entropy"),
    ("prefix_share", "share of attention (0–1)", "Attention to prefix tokens"),
)
# head colours: the Okabe–Ito palette (Okabe & Ito 2008), chosen to stay apart for the common forms of
# colour blindness; its black is replaced by a light grey, which shows on the dark plots
HEAD_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#BBBBBB")
# beyond the eight colours the marker shape changes: head h is colour h % 8 with shape h // 8
HEAD_SYMBOLS = (("o", "●"), ("s", "■"), ("t1", "▲"), ("d", "◆"))  # (pyqtgraph symbol, the glyph in the legend)
SPREAD = 0.5  # the dots of one block are spread over this much of the x axis so that heads do not overlap


def dot_positions(stats: HeadStats, name: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """x (block, heads spread around it), y (the statistic) and (block, head) of every real head's dot;
    NaN entries (a Swin prefix share) are left out."""
    table = getattr(stats, name)  # (L, H)
    xs, ys, keys = [], [], []
    for b, n in enumerate(stats.num_heads):
        for h in range(n):
            v = float(table[b, h])
            if np.isfinite(v):
                xs.append(b + (h - (n - 1) / 2) * (SPREAD / max(n, 1)))
                ys.append(v)
                keys.append((b, h))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), keys


def head_style(h: int) -> tuple[str, str, str]:
    """(colour, pyqtgraph symbol, legend glyph) of head ``h``: the same in all three plots and the legend.
    The first 32 heads get distinct (colour, shape) pairs; past that the pairs repeat."""
    colour = HEAD_COLOURS[h % len(HEAD_COLOURS)]
    symbol, glyph = HEAD_SYMBOLS[(h // len(HEAD_COLOURS)) % len(HEAD_SYMBOLS)]
    return colour, symbol, glyph


def legend_html(num_heads: int) -> str:
    """'heads:' followed by each head's marker in its colour and its number (spaces between entries, so
    that a long legend wraps instead of widening the panel)."""
    if num_heads <= 0:
        return ""
    entries = []
    for h in range(num_heads):
        colour, _symbol, glyph = head_style(h)
        entries.append(f"<span style='color:{colour}'>{glyph}</span>&nbsp;{h}")
    return "heads: " + " ".join(entries)


def _clear_bars(bars: pg.ErrorBarItem) -> None:
    """No error bars (every option reset: ErrorBarItem keeps the options it was given before)."""
    bars.setData(x=None, y=None, top=None, bottom=None, left=None, right=None, height=None, width=None)


class StatsPanel(Panel):
    title = "Statistics"
    help_text = (
        "One dot per head against depth, as in the ViT paper's Fig. 7 (colour = head, as in the legend; past eight "
        "heads the shape changes too; click a dot to select it): "
        "the <b>mean attention distance</b> in input pixels (Swin: inside its windows), the <b>entropy</b> (low = "
        "the head looks at few keys) and the share of attention the patches give to the class and register "
        "tokens. <i>Folder</i> averages many images; the bars are ± one standard deviation over them. "
        "<b>Token norms</b> is the length of every token a block hands on: large ViTs park global information in "
        "a few high-norm background tokens, which register tokens absorb (Darcet et al. 2024); a patch is flagged "
        f"× when its norm exceeds both median + {OUTLIER_K:g}·MAD of the block's patch norms (MAD: median absolute "
        f"deviation) and {OUTLIER_RATIO:g}× their median.")
    reads = ("block", "head", "colormap")
    default_size = (900, 420)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.runner = FolderRunner(session)
        self.folder_result: Optional[FolderStats] = None
        top = QHBoxLayout()
        self.caption = QLabel("")
        self.caption.setStyleSheet("font-weight:600")
        self.caption.setWordWrap(True)
        top.addWidget(self.caption, 1)
        self.legend = QLabel("")
        self.legend.setToolTip("The colour (and, past eight heads, the shape) of each head's dots, the same in "
                               "all three plots; the colours stay apart for colour-blind readers (Okabe–Ito)")
        self.legend.setWordWrap(True)
        top.addWidget(self.legend, 1)
        self.source = combo([("This image", "image"), ("Folder", "folder")],
                            "Statistics of the current image, or the running means over a folder of images")
        self.source.currentIndexChanged.connect(lambda _i: self._source_changed())
        top.addWidget(self.source)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Run the model over every image of a folder and average the statistics")
        self.folder_button.clicked.connect(self.choose_folder)
        top.addWidget(self.folder_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the folder run (the means so far are kept)")
        self.cancel_button.clicked.connect(self.cancel_folder)
        self.cancel_button.setEnabled(False)
        top.addWidget(self.cancel_button)
        top.addWidget(self.help_button())
        self.body.addLayout(top)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m files")
        self.progress.setVisible(False)
        row.addWidget(self.progress)
        self.folder_note = QLabel("")
        self.folder_note.setWordWrap(True)
        self.folder_note.setVisible(False)
        row.addWidget(self.folder_note, 1)
        self.body.addLayout(row)

        self.tabs = QTabWidget()
        self.body.addWidget(self.tabs, 1)
        # heads against depth
        self.graph = pg.GraphicsLayoutWidget()
        self.graph.setBackground(BACKGROUND)
        self.graph.setMinimumHeight(200)
        self.tabs.addTab(self.graph, "Heads vs depth")
        self.plots: dict[str, pg.PlotItem] = {}
        self.dots: dict[str, pg.ScatterPlotItem] = {}
        self.bars: dict[str, pg.ErrorBarItem] = {}
        self.rings: dict[str, pg.ScatterPlotItem] = {}
        self.bands: dict[str, pg.LinearRegionItem] = {}
        self.notes: dict[str, pg.TextItem] = {}
        self.keys: dict[str, list[tuple[int, int]]] = {}  # (block, head) of every dot, in dot order
        for col, (name, ylabel, title) in enumerate(PLOTS):
            p = self.graph.addPlot(row=0, col=col)
            p.setLabel("left", ylabel)
            p.getAxis("left").enableAutoSIPrefix(False)  # shares stay fractions, not "×0.001"
            p.setLabel("bottom", "block (depth)")
            p.showGrid(x=False, y=True, alpha=0.2)
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            band = pg.LinearRegionItem(orientation="vertical", movable=False, brush=BAND, pen=pg.mkPen(None))
            p.addItem(band)
            bars = pg.ErrorBarItem(pen=pg.mkPen(200, 200, 210, 150, width=1), beam=0.06)
            _clear_bars(bars)
            p.addItem(bars)
            dots = pg.ScatterPlotItem(size=9, pen=pg.mkPen(20, 20, 24, width=0.8), hoverable=True,
                                      tip=self._tip(name))
            dots.sigClicked.connect(self._dot_clicked)
            p.addItem(dots)
            ring = pg.ScatterPlotItem(size=17, pen=RING, brush=pg.mkBrush(None))
            p.addItem(ring)
            note = pg.TextItem("", color="#cccccc", anchor=(0.5, 0.5))
            p.addItem(note)
            self.plots[name], self.dots[name], self.bars[name] = p, dots, bars
            self.rings[name], self.bands[name], self.notes[name] = ring, band, note
        # token norms
        norms = QWidget()
        lay = QHBoxLayout(norms)
        lay.setContentsMargins(0, 0, 0, 0)
        self.norm_view = pg.GraphicsLayoutWidget()
        self.norm_view.setBackground(BACKGROUND)
        self.norm_plot = self.norm_view.addPlot(row=0, col=0)
        self.norm_plot.invertY(True)
        self.norm_plot.setAspectLocked(True)
        self.norm_plot.setMenuEnabled(False)
        self.norm_img = pg.ImageItem()
        self.norm_plot.addItem(self.norm_img)
        self.norm_marks = pg.ScatterPlotItem(symbol="x", size=8, pen=pg.mkPen(80, 220, 255, width=1),
                                             brush=pg.mkBrush(80, 220, 255))
        self.norm_plot.addItem(self.norm_marks)
        self.norm_bar = ColorBar()  # numbers even for a tiny range (see widgets/colorbar.py)
        self.norm_view.addItem(self.norm_bar, row=0, col=1)
        lay.addWidget(self.norm_view, 3)
        side = QVBoxLayout()
        self.norm_text = QLabel("")
        self.norm_text.setWordWrap(True)
        self.norm_text.setMinimumWidth(180)
        side.addWidget(self.norm_text)
        side.addStretch(1)
        lay.addLayout(side, 1)
        self.tabs.addTab(norms, "Token norms")
        self.titles = {name: title for name, _l, title in PLOTS}  # what each plot's title says now
        self.norm_title = "colour: L2 norm of each token"
        self.on_font_change()
        self.norm_array: Optional[np.ndarray] = None  # the map drawn, for tests and export
        self.outlier_array: Optional[np.ndarray] = None  # (H_b, W_b) bool
        self.shown: Optional[HeadStats] = None  # the statistics behind the dots
        self.tabs.currentChanged.connect(lambda _i: self.schedule())
        session.products.ready.connect(lambda name: self.schedule() if name == "stats" else None)
        session.model_loaded.connect(self._model_changed)
        session.cancelled.connect(self._session_cancelled)

    def on_font_change(self) -> None:
        for name, p in self.plots.items():
            style_plot(p, self.titles[name])
        style_plot(self.norm_plot, self.norm_title)
        self.norm_bar.refresh_font()
        for note in self.notes.values():
            note.setFont(plot_font())

    def _set_title(self, name: str, text: str) -> None:
        if self.titles[name] != text:
            self.titles[name] = text
            self.plots[name].setTitle(text, color="#dddddd", size=f"{plot_font().pointSizeF():.1f}pt")

    # -- folder runs ----------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.folder_result.folder if self.folder_result is not None else ""
        folder = QFileDialog.getExistingDirectory(self, "Folder of images", start)
        if folder:
            self.run_folder(folder)

    def run_folder(self, folder: str, batch_size: Optional[int] = None) -> None:
        """Average the statistics over every image of ``folder`` on the worker; the plots follow each batch."""
        if self.session.model is None:
            self.session.report(ValueError("open a model first: folder statistics run the current model"))
            return
        self.folder_result = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.folder_note.setText(f"Reading {folder}…")
        self.folder_note.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.folder_button.setEnabled(False)
        select_data(self.source, "folder")
        try:
            self.runner.start(folder, self._folder_update, self._folder_done, self._folder_failed, batch_size)
        except ValueError as e:
            self._folder_failed(e)
        self.schedule()

    def cancel_folder(self) -> None:
        snap = self.runner.cancel()
        if snap is not None:
            self._folder_update(snap)
        else:
            self.folder_note.setText("Cancelled before the first batch finished.")
        self._folder_idle()

    def _session_cancelled(self) -> None:
        """The window's Cancel stopped every request, a folder run among them."""
        if self.cancel_button.isEnabled():
            self.cancel_folder()

    def _folder_update(self, snap: FolderStats) -> None:
        self.folder_result = snap
        self.progress.setRange(0, max(snap.files, 1))
        self.progress.setValue(snap.done)
        text = snap.message()
        if snap.images == 0 and (snap.finished or snap.cancelled):
            text = "No readable images: " + text
        self.folder_note.setText(f"{snap.folder}: {text}")
        self.folder_note.setToolTip("\n".join(f"{u.name}: {u.reason}" for u in snap.unreadable))
        self.schedule()

    def _folder_done(self, snap: FolderStats) -> None:
        self._folder_update(snap)
        self._folder_idle()

    def _folder_failed(self, e: Exception) -> None:
        self._folder_idle()
        self.folder_note.setText(f"Folder statistics failed: {' '.join(str(e).split())}")
        self.session.report(e)

    def _folder_idle(self) -> None:
        self.cancel_button.setEnabled(False)
        self.folder_button.setEnabled(True)

    def _model_changed(self) -> None:
        """A folder's means belong to the model that made them: a new model drops them."""
        if self.runner.running():
            self.runner.cancel()
        self._folder_idle()
        self.folder_result = None
        self.progress.setVisible(False)
        self.folder_note.setVisible(False)
        self.schedule()

    def _source_changed(self) -> None:
        self.schedule()

    # -- clicking -------------------------------------------------------------------------------
    def _tip(self, name: str):
        unit = {"mean_distance": " px", "entropy": " nats", "prefix_share": ""}[name]

        def tip(x, y, data):
            b, h = data
            return f"block {b}, head {h}: {y:.3g}{unit}"
        return tip

    def _dot_clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            b, h = points[0].data()
            self.session.view.update(block=int(b), head=int(h))

    # -- drawing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.tabs.currentIndex() == 0:
            self._draw_stats()
        else:
            self._draw_norms()

    def _current_stats(self) -> tuple[Optional[HeadStats], Optional[HeadStats], str]:
        """(means, spread or None, caption) for the chosen source."""
        if self.source.currentData() == "folder":
            r = self.folder_result
            if r is None or self.runner.model is not self.session.model:
                return None, None, "Choose a folder of images with Folder… to average over many images."
            if r.mean is None:
                return None, None, f"Folder: no image read yet ({r.done} of {r.files} files looked at)."
            state = "cancelled" if r.cancelled else ("" if r.finished else "running")
            if self.runner.use_pos_embed != self.session.doc.use_pos_embed:
                state += (", " if state else "") + ("run with" if self.runner.use_pos_embed else "run without") \
                    + " position embeddings"
            return r.mean, r.std, (f"Mean over {r.images} images of {r.folder} (bars: ± one std)"
                                   + (f", {state}" if state else ""))
        st = self.session.products.get("stats")
        if st is None:
            return None, None, "Computing the statistics of this image…"
        if isinstance(st, Unavailable):
            return None, None, st.reason
        return st, None, "This image"

    def _draw_stats(self) -> None:
        stats, spread, caption = self._current_stats()
        self.shown = stats
        swin = self.session.capture is not None and self.session.capture.family == "swin"
        self.caption.setText(caption + (" · Swin: distances within windows" if swin and stats is not None else ""))
        v = self.session.view
        H = max(stats.num_heads) if stats is not None else 0
        self.legend.setText(legend_html(H) if H <= 32 else f"colour and shape = head ({H} heads)")
        for name, _ylabel, title in PLOTS:
            dots, bars, ring, note = self.dots[name], self.bars[name], self.rings[name], self.notes[name]
            p = self.plots[name]
            if stats is None:
                for item in (dots, ring):
                    item.setData(x=[], y=[])
                _clear_bars(bars)
                self.keys[name] = []
                note.setText("")
                continue
            x, y, keys = dot_positions(stats, name)
            self.keys[name] = keys
            styles = [head_style(h) for _b, h in keys]
            dots.setData(x=x, y=y, data=keys, brush=[pg.mkBrush(c) for c, _s, _g in styles],
                         symbol=[sym for _c, sym, _g in styles])
            if spread is not None and len(keys):
                s = np.array([getattr(spread, name)[b, h] for b, h in keys])  # (dots,) std over the images
                # the bars end at 0 below: every statistic is non-negative
                bars.setData(x=x, y=y, top=s, bottom=np.minimum(s, y), left=None, right=None, height=None, width=None)
            else:
                _clear_bars(bars)
            sel = [i for i, (b, h) in enumerate(keys) if b == v.block and (not isinstance(v.head, int) or h == v.head)]
            ring.setData(x=x[sel], y=y[sel])
            self.bands[name].setRegion((v.block - 0.4, v.block + 0.4))
            L = len(stats.num_heads)
            p.setXRange(-0.6, L - 0.4, padding=0)
            p.getAxis("bottom").setTicks([[(b, str(b)) for b in range(L)]])
            if name == "prefix_share" and not len(keys):
                note.setText("Swin has no prefix tokens:\nnot applicable" if swin else "no prefix tokens")
                note.setPos((L - 1) / 2, 0.5)
                p.setYRange(0, 1, padding=0.05)
            else:
                note.setText("")
                if name == "mean_distance":
                    self._set_title(name, title + (" (within windows)" if swin else ""))
                top = float(np.nanmax(y + (np.array([getattr(spread, name)[b, h] for b, h in keys])
                                           if spread is not None else 0))) if len(y) else 1.0
                top = max(min(top * 1.1, 1.0), 0.05) if name == "prefix_share" else max(top * 1.1, 1e-6)
                p.setYRange(-0.03 * top, top, padding=0)  # a little room below 0 so dots at 0 stay whole

    def _draw_norms(self) -> None:
        v = self.session.view
        self.legend.setText("")
        tn = self.session.products.get("token_norms")
        if isinstance(tn, Unavailable) or tn is None:
            self.caption.setText(tn.reason if tn is not None else "")
            self.norm_array = self.outlier_array = None
            self.norm_img.clear()
            self.norm_marks.setData(x=[], y=[])
            self.norm_text.setText("")
            return
        tn: TokenNorms
        m = tn.map  # (H_b, W_b)
        self.norm_array, self.outlier_array = m, tn.outliers.mask
        swin = self.session.capture.family == "swin"
        unit = f"stage token ({tn.token_px} px)" if swin else f"patch ({tn.token_px} px)"
        self.caption.setText(f"Block {v.block}: L2 norm of every output token, on its {m.shape[0]}×{m.shape[1]} "
                             f"grid")
        lo, hi = float(np.min(m)), float(np.max(m))
        hi = hi if hi > lo else lo + 1.0
        self.norm_img.setImage(m, levels=(lo, hi), autoLevels=False)
        self.norm_img.setLookupTable(lookup_table(v.colormap, False))
        self.norm_bar.set(v.colormap, (lo, hi))
        self.norm_img.setRect(QRectF(0, 0, m.shape[1], m.shape[0]))
        rows, cols = np.nonzero(tn.outliers.mask)
        self.norm_marks.setData(x=cols + 0.5, y=rows + 0.5)
        if self.norm_plot.getAxis("bottom").labelText != f"{unit} column":
            self.norm_plot.setLabel("left", f"{unit} row")
            self.norm_plot.setLabel("bottom", f"{unit} column")
            style_plot(self.norm_plot, self.norm_title)
        for side, n in (("left", m.shape[0]), ("bottom", m.shape[1])):
            step = max(1, int(np.ceil(n / 16)))
            self.norm_plot.getAxis(side).setTicks([[(i + 0.5, str(i)) for i in range(0, n, step)]])  # cell centres
        self.norm_plot.vb.autoRange(padding=0.02)
        o = tn.outliers
        lines = []
        if swin:
            lines.append("<b>Prefix tokens</b>: none (Swin has no class or register tokens).")
        elif len(tn.prefix):
            lines.append("<b>Prefix tokens</b>:<br>" + "<br>".join(
                f"&nbsp;&nbsp;{n}: {x:.2f}" for n, x in zip(tn.prefix_names, tn.prefix)))
        else:
            lines.append("<b>Prefix tokens</b>: none.")
        n_out = int(o.mask.sum())
        lines.append(f"<b>Patch tokens</b>: median {o.median:.2f}, MAD {o.mad:.2f}, max {float(np.max(m)):.2f}")
        lines.append(f"Outlier rule: norm &gt; max(median + {o.k:g}·MAD, {o.ratio:g}·median) = {o.threshold:.2f}")
        lines.append(f"<b>{n_out}</b> of {m.size} patch tokens flagged ×" + (
            ": " + ", ".join(f"({r}, {c})" for r, c in zip(rows[:12], cols[:12])) + ("…" if n_out > 12 else "")
            if n_out else ""))
        self.norm_text.setText("<br><br>".join(lines))
