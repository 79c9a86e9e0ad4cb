"""The workspace: docked panels over one session, menus, keys, recent files, drag and drop, layout memory.

Every panel follows ``session.view``; the window only wires actions to the view state and to the
session's requests. Shortcuts live on actions (not widgets) so they work whichever panel has focus.
"""
from __future__ import annotations

import html
import importlib
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QByteArray, QEvent, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QAbstractSpinBox, QApplication, QComboBox, QDialog, QDockWidget, QFileDialog, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QMainWindow, QMessageBox, QProgressBar, QPushButton, QScrollArea, QTabBar,
                               QSlider, QToolBar, QVBoxLayout, QWidget)

from ..session import Session
from ..session.shown import head_name
from ..session.view_state import METHOD_NAMES, METHODS
from .panels.heads_panel import HeadsPanel
from .panels.image_panel import ImagePanel
from .panels.maps_panel import MapsPanel
from .panels.model_panel import ModelPanel
from .panels.predictions_panel import PredictionsPanel
from .model_browser import ModelBrowser
from .routing import route
from .widgets.choices import select_data

DEMO_DIR = Path(__file__).resolve().parents[2] / "models"

MODEL_FILTER = "Checkpoints (*.safetensors *.pth *.pt *.bin *.ckpt *.json);;All files (*)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif);;All files (*)"
LAYOUT_VERSION = 4  # bump when the set or names of docks change, so an old layout is not restored
MAX_RECENT = 10
LESSONS = (  # (dock name, title, module, class) of the lesson panels, tabbed behind Maps
    ("swin", "Swin windows", ".panels.swin_panel", "SwinPanel"),
    ("posembed", "Position embeddings", ".panels.pos_embed_panel", "PosEmbedPanel"),
    ("stats", "Statistics", ".panels.stats_panel", "StatsPanel"),
    ("scramble", "Scramble", ".panels.scramble_panel", "ScramblePanel"),
    ("compare", "Compare", ".panels.compare_panel", "ComparePanel"),
    ("anatomy", "Attention anatomy", ".panels.anatomy_panel", "AnatomyPanel"),
)
EDITORS = (QAbstractItemView, QAbstractSpinBox, QLineEdit)  # widgets whose own arrow keys win over navigation
KEYS_HELP = ("↓ / ↑: next / previous block\nHome / End: first / last block\n"
             "→ / ←: next / previous head (then the fusions mean, max, min)\n"
             "Shift + arrows: move the query patch\nEsc: back to the default query (class token or centre patch)\n"
             "Click: make a patch the query · wheel: zoom · drag: pan · double-click: fit\n"
             "F11: full screen · Ctrl+= / Ctrl+-: larger / smaller text\n"
             "Ctrl+O: open an image · Ctrl+M: open a model · Ctrl+B: model browser · F1: this list\n"
             "Ctrl+E: export a figure · Ctrl+Shift+C: copy it · Ctrl+S / Ctrl+Shift+O: save / open the view")


class ErrorBanner(QWidget):
    """The latest failure, in the window until dismissed (or the next load succeeds); 'All' reads back the list."""

    def __init__(self, session: Session, show_all):
        super().__init__()
        self.session = session
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 1, 8, 1)
        self.text = QLabel("")  # one line, elided (the whole message in its tooltip and in All messages),
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # so the docks keep their height
        self.text.setMinimumWidth(120)
        self._message = ""
        self.all = QPushButton("All messages")
        self.all.clicked.connect(show_all)
        self.dismiss = QPushButton("Dismiss")
        self.dismiss.clicked.connect(session.dismiss_errors)
        self.retry_cpu = QPushButton("Retry on the CPU")
        self.retry_cpu.setToolTip("The GPU ran out of memory: load the model on the CPU instead")
        self.retry_cpu.clicked.connect(lambda: (session.dismiss_errors(), session.reload(device="cpu")))
        lay.addWidget(self.text, 1)
        lay.addWidget(self.retry_cpu)
        lay.addWidget(self.all)
        lay.addWidget(self.dismiss)
        self.setStyleSheet("background:#6b1d1d;color:#ffe3e3")
        session.errors_changed.connect(self.update_text)  # the window shows and hides the bar that holds it

    def update_text(self) -> None:
        errs = self.session.errors
        if errs:
            more = f" ({len(errs)} messages)" if len(errs) > 1 else ""
            self._message = f"⚠ {errs[-1].message}{more}"
            self.text.setToolTip(errs[-1].message)
            self._elide()
        self.retry_cpu.setVisible(bool(errs) and "out of memory" in errs[-1].message)

    def _elide(self) -> None:
        fm = self.text.fontMetrics()
        self.text.setText(fm.elidedText(" ".join(self._message.split()), Qt.TextElideMode.ElideRight,
                                        max(40, self.text.width())))

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._elide()


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: Optional[QSettings] = None):
        super().__init__()
        self.session = session
        self.settings = settings or QSettings("attnviz", "attnviz")
        self.error_log: list[str] = []
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.resize(1480, 900)
        self.panels = {"image": ImagePanel(session), "heads": HeadsPanel(session), "maps": MapsPanel(session),
                       "predictions": PredictionsPanel(session), "model": ModelPanel(session)}
        self.docks: dict[str, QDockWidget] = {}
        self._lazy: dict[str, tuple[str, str]] = {}
        self.browser = ModelBrowser(self.settings, DEMO_DIR, synchronous=session.worker.synchronous)
        self.browser.sigOpen.connect(session.open_model)
        self._controls()
        self._docks()
        self._menus()
        self._status()
        self._default_state = self.saveState(LAYOUT_VERSION)
        self._restore_layout()
        session.captured.connect(self._captured)
        session.busy.connect(self._busy)
        session.error.connect(self._error)
        session.model_loaded.connect(lambda: self._remember("recent/models", session.doc.model_path))
        session.model_loaded.connect(lambda: self._working(None))
        session.model_loaded.connect(self._model_without_image)
        session.image_loaded.connect(lambda: self._working(None))
        session.image_loaded.connect(lambda: self._remember("recent/images", session.doc.image_path))
        for name in ("block", "head", "query", "method"):
            session.view.signal(name).connect(lambda *_: self._view_changed())
        self._update_title()

    # -- building ---------------------------------------------------------------------------------
    def _controls(self) -> None:
        v = self.session.view
        tb = QToolBar("Selection")
        tb.setObjectName("toolbar-selection")
        self.addToolBar(tb)
        self.block = QSlider(Qt.Orientation.Horizontal)
        self.block.setMinimumWidth(220)
        self.block.setToolTip("Block (↑/↓, Home/End)")
        self.block.valueChanged.connect(lambda b: setattr(v, "block", b))
        self.block_label = QLabel("block –")
        self.block_label.setMinimumWidth(260)
        self.head = QComboBox()
        self.head.setMinimumContentsLength(12)
        self.head.setToolTip("Head, or how heads are fused (←/→)")
        self.head.activated.connect(lambda _i: setattr(v, "head", self.head.currentData()))
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_NAMES[m], m)
        self.method.setToolTip("Map shown in the Image panel")
        self.method.activated.connect(lambda _i: setattr(v, "method", self.method.currentData()))
        self.query_label = QLabel("query –")
        self.reset_query = QPushButton("Reset query")
        self.reset_query.setToolTip("Back to the model's default query: the class token, or the centre patch "
                                    "for models without one (Swin). Esc")
        self.reset_query.clicked.connect(self.session.reset_query)
        for w in (QLabel(" Block "), self.block, self.block_label, QLabel(" Head "), self.head,
                  QLabel(" Map "), self.method, QLabel("  "), self.query_label, self.reset_query):
            tb.addWidget(w)
        self.banner = ErrorBanner(self.session, self.show_messages)
        self.addToolBarBreak()
        bar = QToolBar("Messages")
        bar.setObjectName("toolbar-messages")
        bar.setMovable(False)
        bar.addWidget(self.banner)
        self.addToolBar(bar)
        self.banner_bar = bar
        self.session.errors_changed.connect(lambda: bar.setVisible(bool(self.session.errors)))
        bar.setVisible(False)

    def _docks(self) -> None:
        L, R = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        for name, area in (("image", L), ("heads", R), ("maps", R), ("predictions", L), ("model", L)):
            self.add_panel(name, self.panels.pop(name), area)
        self.add_panel("browser", self.browser, L, title="Model browser")
        self.tabifyDockWidget(self.docks["predictions"], self.docks["model"])
        self.tabifyDockWidget(self.docks["model"], self.docks["browser"])
        previous = "maps"
        for name, title, module, cls in LESSONS:  # stacked behind the Maps tab, built when first shown
            self.add_lazy_panel(name, title, module, cls, R, tab_with=previous)
            previous = name  # each onto the last, so the tabs keep this order
        self.docks["predictions"].raise_()
        self.docks["maps"].raise_()
        self._sized = False

    def _hide_stale_tab_bars(self) -> None:
        """Tabifying the lesson docks onto Maps leaves Qt's first two-tab bar (Maps, Swin windows) behind,
        painted over the docks at its old place while the real bar holds all the tabs; hide such leftovers
        (a bar whose tabs are the start of a longer bar's)."""
        bars = [b for b in self.findChildren(QTabBar) if b.parent() is self]
        tabs = {b: [b.tabText(i) for i in range(b.count())] for b in bars}
        for b in bars:
            if any(o is not b and len(tabs[o]) > len(tabs[b]) and tabs[o][:len(tabs[b])] == tabs[b] for o in bars):
                b.setVisible(False)

    def add_lazy_panel(self, name: str, title: str, module: str, cls: str, area: Qt.DockWidgetArea,
                       tab_with: Optional[str] = None) -> QDockWidget:
        """A dock whose panel is imported and built the first time it is shown (a lesson the user has not
        opened costs nothing at start-up); ``panel(name)`` builds it on demand too."""
        d = self.add_panel(name, QLabel(f"{title}: opening…"), area, title=title, tab_with=tab_with)
        self.panels.pop(name)
        self._lazy[name] = (module, cls)
        d.visibilityChanged.connect(lambda visible, n=name: visible and self.panel(n))
        return d

    def panel(self, name: str) -> QWidget:
        """The panel docked as ``name``, built now if it is a lesson not yet opened."""
        if name not in self.panels:
            module, cls = self._lazy.pop(name)
            panel = getattr(importlib.import_module(module, __package__), cls)(self.session)
            self.panels[name] = panel
            placeholder = self.docks[name].widget()
            self.docks[name].setWidget(panel)
            placeholder.deleteLater()  # a dock keeps (and may still paint) the widget it held
            if self.session.capture is not None:
                panel.adopt_capture()  # draw what is loaded now, as if the capture had just arrived
        return self.panels[name]

    def add_panel(self, name: str, panel: QWidget, area: Qt.DockWidgetArea, title: Optional[str] = None,
                  tab_with: Optional[str] = None, scroll: bool = False) -> QDockWidget:
        """Put a panel in a dock named ``dock-{name}`` (the name QSettings restores it by); ``tab_with``
        stacks it on another dock; ``scroll`` wraps a long form so the docks beside it keep their size."""
        d = QDockWidget(title or getattr(panel, "title", name), self)
        d.setObjectName(f"dock-{name}")
        if scroll or name == "model":
            sa = QScrollArea()
            sa.setWidgetResizable(True)
            sa.setWidget(panel)
            d.setWidget(sa)
        else:
            d.setWidget(panel)
        d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable | QDockWidget.DockWidgetFeature.DockWidgetMovable
                      | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, d)
        if tab_with is not None:
            self.tabifyDockWidget(self.docks[tab_with], d)
        self.docks[name] = d
        if name != "browser":
            self.panels[name] = panel
        return d

    def _default_sizes(self) -> None:
        """The default split: the image large on the left, heads above maps on the right."""
        w, h = max(self.width(), 800), max(self.height(), 600)
        self.resizeDocks([self.docks["image"], self.docks["heads"]], [int(w * 0.5), int(w * 0.5)],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["image"], self.docks["predictions"]], [int(h * 0.68), int(h * 0.25)],
                         Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["heads"], self.docks["maps"]], [int(h * 0.45), int(h * 0.5)],
                         Qt.Orientation.Vertical)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self._hide_stale_tab_bars()
        if not self._sized:
            self._sized = True
            if not self._restored:
                QTimer.singleShot(0, self._default_sizes)  # once the docks have been laid out

    def _action(self, menu, text: str, slot, key=None, checkable: bool = False) -> QAction:
        act = QAction(text, self)
        if key is not None:
            act.setShortcuts(key if isinstance(key, list) else [QKeySequence(key)])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _menus(self) -> None:
        s, v = self.session, self.session.view
        f = self.menuBar().addMenu("&File")
        self._action(f, "Open &model…", self.open_model_dialog, "Ctrl+M")
        self._action(f, "Open &image…", self.open_image_dialog, QKeySequence.StandardKey.Open)
        self._action(f, "&Browse models…", self.show_browser, "Ctrl+B")
        self.recent_models = f.addMenu("Recent models")
        self.recent_images = f.addMenu("Recent images")
        self._action(f, "Clear recent", self.clear_recent)
        f.addSeparator()
        self._action(f, "Export &figure…", lambda: self._export("export_figure", view=True), "Ctrl+E")
        self._action(f, "Export &animation…", lambda: self._export("export_animation", view=True))
        self._action(f, "Export a&rrays…", lambda: self._export("export_arrays"))
        self._action(f, "&Copy figure", lambda: self._export("copy_figure"), "Ctrl+Shift+C")
        self._action(f, "&Save view…", lambda: self._export("save_view"), QKeySequence.StandardKey.Save)
        self._action(f, "Open &view…", lambda: self._export("open_view"), "Ctrl+Shift+O")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._fill_recent()

        nav = self.menuBar().addMenu("&Navigate")
        K, shift = Qt.Key, Qt.KeyboardModifier.ShiftModifier
        for text, key, slot in (("Next block", K.Key_Down, lambda: setattr(v, "block", v.block + 1)),
                                ("Previous block", K.Key_Up, lambda: setattr(v, "block", v.block - 1)),
                                ("First block", K.Key_Home, lambda: setattr(v, "block", 0)),
                                ("Last block", K.Key_End, lambda: setattr(v, "block", v.limits.num_blocks - 1)),
                                ("Next head", K.Key_Right, lambda: v.step_head(+1)),
                                ("Previous head", K.Key_Left, lambda: v.step_head(-1))):
            self._action(nav, text, self._nav(key, slot), QKeySequence(key))
        self._action(nav, "Reset query", s.reset_query, "Escape")
        for text, d, key in (("Query up", (-1, 0), K.Key_Up), ("Query down", (1, 0), K.Key_Down),
                             ("Query left", (0, -1), K.Key_Left), ("Query right", (0, 1), K.Key_Right)):
            self._action(nav, text, lambda _c=False, d=d: s.move_query(*d), QKeySequence(shift | key))

        view = self.menuBar().addMenu("&View")
        for d in self.docks.values():
            view.addAction(d.toggleViewAction())
        view.addSeparator()
        self._action(view, "Reset layout", self.reset_layout)
        self._action(view, "Full screen", self.toggle_full_screen, "F11")
        self._action(view, "Larger text", lambda: self.zoom_text(+1), [QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
        self._action(view, "Smaller text", lambda: self.zoom_text(-1), "Ctrl+-")

        h = self.menuBar().addMenu("&Help")
        self._action(h, "Keys…", self.show_keys, "F1")
        self._action(h, "Messages…", self.show_messages)
        self._action(h, "&About attnviz", self.about)

    def _status(self) -> None:
        """The view summary, and a busy bar with Cancel while the worker loads, runs or computes."""
        self.status = QLabel("")
        self.work = QProgressBar()
        self.work.setMaximumWidth(180)
        self.work.setRange(0, 0)
        self.work_cancel = QPushButton("Cancel")
        self.work_cancel.setToolTip("Stop what is running; the app keeps what it had")
        self.work_cancel.clicked.connect(self.cancel_work)
        for w in (self.work, self.work_cancel):
            w.setVisible(False)
            self.statusBar().addPermanentWidget(w)
        self.statusBar().addPermanentWidget(self.status)
        self._work_poll = QTimer(self)
        self._work_poll.setInterval(250)
        self._work_poll.timeout.connect(lambda: self._working(None))
        p = self.session.products
        p.started.connect(lambda name: self._working(True))
        p.ready.connect(lambda name: self._working(None))

    def _working(self, on: Optional[bool]) -> None:
        """Show the busy bar (on=True), hide it (False), or show it while anything is still pending (None).
        While it shows, it asks the worker again every quarter second, so it never outlives the work (a
        superseded request sends no 'ready')."""
        if on is None:
            on = self.session.pending is not None or self.session.worker.busy()
        self.work.setVisible(on)
        self.work_cancel.setVisible(on)
        if on and not self._work_poll.isActive():
            self._work_poll.start()
        elif not on:
            self._work_poll.stop()

    def cancel_work(self) -> None:
        self.session.cancel()
        self._working(False)
        self.statusBar().showMessage("Cancelled", 4000)

    def _export(self, action: str, view: bool = False) -> None:
        """Run one of the export dialog's actions; ``view`` preselects the view of the panel the user is in."""
        from . import export_dialog

        kwargs = {}
        if view:
            dock = self.current_dock()
            if dock in export_dialog.PANEL_VIEWS:
                kwargs["view"] = export_dialog.panel_view(dock, self.session)
            if action == "export_animation" and kwargs.get("view") in ("stats", "pos-embed"):
                kwargs.pop("view")  # neither changes from block to block: animate the overlay instead
        try:
            getattr(export_dialog, action)(self, self.session, **kwargs)
        except Exception as e:  # an export that fails says so; the app goes on
            self.session.report(RuntimeError(f"export failed: {type(e).__name__}: {e}"))

    def current_dock(self) -> Optional[str]:
        """The name of the dock holding the keyboard focus (None outside every dock)."""
        w = QApplication.focusWidget()
        while w is not None:
            for name, d in self.docks.items():
                if w is d:
                    return name
            w = w.parentWidget()
        return None

    # -- layout memory ----------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        st = self.settings
        self._restored = False
        if int(st.value("layout/version", 0) or 0) != LAYOUT_VERSION:
            return
        geo = st.value("layout/geometry")
        state = st.value("layout/state")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        if isinstance(state, QByteArray):
            self._restored = self.restoreState(state, LAYOUT_VERSION)
        screen = self.screen() or QApplication.primaryScreen()
        if screen is not None:  # a window saved larger than this screen comes back inside it
            avail = screen.availableGeometry()
            if self.width() > avail.width() or self.height() > avail.height():
                self.resize(min(self.width(), avail.width()), min(self.height(), avail.height()))

    def save_layout(self) -> None:
        st = self.settings
        st.setValue("layout/version", LAYOUT_VERSION)
        st.setValue("layout/geometry", self.saveGeometry())
        st.setValue("layout/state", self.saveState(LAYOUT_VERSION))
        st.sync()

    def reset_layout(self) -> None:
        for d in self.docks.values():
            d.setFloating(False)
            d.show()
        self.restoreState(self._default_state, LAYOUT_VERSION)  # the docks as built, before any restore
        self._default_sizes()
        self._hide_stale_tab_bars()

    def closeEvent(self, ev) -> None:
        self.save_layout()
        self.browser.shutdown()
        super().closeEvent(ev)

    # -- files ------------------------------------------------------------------------------------
    def _last_dir(self, key: str) -> str:
        return str(self.settings.value(f"dirs/{key}", "") or "")

    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", self._last_dir("model"), MODEL_FILTER)
        if path:
            self.settings.setValue("dirs/model", str(Path(path).parent))
            self.session.open_model(path)

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self._last_dir("image"), IMAGE_FILTER)
        if path:
            self.settings.setValue("dirs/image", str(Path(path).parent))
            self.session.open_image(path)

    def show_browser(self) -> None:
        d = self.docks["browser"]
        d.show()
        d.raise_()

    def recent(self, key: str) -> list[str]:
        val = self.settings.value(key, [])
        if isinstance(val, str):
            val = [val]
        return [str(p) for p in (val or [])]

    def _remember(self, key: str, path: Optional[str]) -> None:
        if not path:
            return
        items = [path] + [p for p in self.recent(key) if p != path]
        self.settings.setValue(key, items[:MAX_RECENT])
        self._fill_recent()
        self._update_title()

    def clear_recent(self) -> None:
        self.settings.setValue("recent/models", [])
        self.settings.setValue("recent/images", [])
        self._fill_recent()

    def _fill_recent(self) -> None:
        for menu, key, opener in ((self.recent_models, "recent/models", self.session.open_model),
                                  (self.recent_images, "recent/images", self.session.open_image)):
            menu.clear()
            items = self.recent(key)
            for p in items:
                act = menu.addAction(p)
                act.triggered.connect(lambda _c=False, p=p, o=opener: o(p))
            if not items:
                menu.addAction("(none)").setEnabled(False)

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for url in ev.mimeData().urls():
            self.open_path(url.toLocalFile())
        ev.acceptProposedAction()

    def open_path(self, path: str) -> None:
        """Open a dropped (or given) path as what it is: a checkpoint file/folder or an image."""
        kind = route(path)
        if kind == "model":
            self.session.open_model(path)
        elif kind == "image":
            self.session.open_image(path)
        else:
            self.session.report(ValueError(f"{path}: neither an image nor a checkpoint attnviz can read"))

    # -- session -> window ------------------------------------------------------------------------
    def _busy(self, what: str) -> None:
        self.statusBar().showMessage(f"{what[:1].upper()}{what[1:]}…")
        self._working(True)

    def _error(self, msg: str) -> None:
        self._working(None)
        self.error_log.append(msg)
        self.statusBar().showMessage(f"Error: {msg}", 8000)

    def _captured(self) -> None:
        cap, v = self.session.capture, self.session.view
        self.block.blockSignals(True)
        self.block.setRange(0, len(cap.blocks) - 1)
        self.block.setValue(v.block)
        self.block.blockSignals(False)
        self.statusBar().clearMessage()
        self.session.products.request("stats")
        self._working(None)
        self._view_changed()
        self._update_title()

    def _view_changed(self) -> None:
        s, v = self.session, self.session.view
        cap = s.capture
        if cap is None:
            return
        b = cap.blocks[v.block]
        self.block.blockSignals(True)
        self.block.setValue(v.block)
        self.block.blockSignals(False)
        where = f"block {v.block} of {len(cap.blocks)}"
        if cap.family == "swin":
            where += f" · stage {b.stage} · window {b.window_size} · shift {b.shift_size}"
        self.block_label.setText(where)
        if self.head.count() != b.num_heads + 3:  # the items change only with the block's head count
            self.head.blockSignals(True)
            self.head.clear()
            for h in range(b.num_heads):
                self.head.addItem(f"head {h}", h)
            for fusion in ("mean", "max", "min"):
                self.head.addItem(f"{fusion} of heads", fusion)
            self.head.blockSignals(False)
        select_data(self.head, v.head)
        select_data(self.method, v.method)
        g = s.geometry
        ql = v.query.label(list(g.prefix_names))
        self.query_label.setText(f"Query: {ql}")
        no_pe = "" if s.doc.use_pos_embed else " · position embeddings OFF"
        self.status.setText(f"block {v.block} of {len(cap.blocks)} · {head_name(v.head)} · query {ql} · "
                            f"{METHOD_NAMES[v.method]} · {s.model.device}{no_pe}")

    def _model_without_image(self) -> None:
        """A model loaded before any image: say what is missing instead of looking busy."""
        self._update_title()
        if self.session.doc.image is None:
            self.statusBar().showMessage("Model loaded: open an image (Ctrl+O) to see its attention")

    def _update_title(self) -> None:
        s = self.session
        if s.model is None:
            self.setWindowTitle("attnviz")
            return
        if s.capture is None:
            self.setWindowTitle(f"attnviz — {s.model.info.name or Path(s.doc.model_path or '').name} — no image")
            return
        model = s.model.info.name or Path(s.doc.model_path or "").name
        image = Path(s.doc.image_path or "").name
        no_pe = " (without position embeddings)" if not s.doc.use_pos_embed else ""
        self.setWindowTitle(f"attnviz — {model}{no_pe} — {image}")

    def flush(self) -> None:
        """Repaint every panel that has pending changes (tests and benchmarks)."""
        for p in self.panels.values():
            p.flush()

    def _nav(self, key: Qt.Key, slot):
        """A navigation key's slot: arrows, Home and End belong to a list, table, spin box or text field that
        has the focus (the key is handed to it); elsewhere they step blocks and heads."""
        def run(_checked=False):
            fw = QApplication.focusWidget()
            if isinstance(fw, EDITORS):
                fw.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier))
                return
            slot()
        return run

    # -- presenting ---------------------------------------------------------------------------------
    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def zoom_text(self, step: int) -> None:
        """Presenting: every widget's text one point larger or smaller (the application font)."""
        app = QApplication.instance()
        f = app.font()
        size = max(7.0, min(28.0, (f.pointSizeF() if f.pointSizeF() > 0 else 10.0) + step))
        f.setPointSizeF(size)
        app.setFont(f)

    def show_keys(self) -> None:
        QMessageBox.information(self, "Keys", KEYS_HELP)

    def show_messages(self) -> None:
        d = QDialog(self)
        d.setWindowTitle("Messages")
        lay = QVBoxLayout(d)
        lst = QListWidget()
        lst.setWordWrap(True)  # long messages wrap instead of scrolling sideways
        lst.addItems(self.error_log or ["No messages."])
        lay.addWidget(lst)
        ok = QPushButton("Close")
        ok.clicked.connect(d.accept)
        lay.addWidget(ok)
        d.resize(640, 320)
        d.exec()

    def about(self) -> None:
        from .. import __version__
        from ..nets.device import device_report

        m = self.session.model
        lines = ([f"Model on <b>{m.device}</b> ({str(m.dtype).replace('torch.', '')})"] if m is not None else [])
        lines += [html.escape(line) for line in device_report()]
        QMessageBox.about(self, "About attnviz", f"<b>attnviz {__version__}</b><br>See how Vision Transformers "
                          f"attend.<br><br>{'<br>'.join(lines)}")

