"""Main window: the network's input with the attention of the chosen query overlaid, the block/head
controls, and the top predictions. All numbers come from the session (and so from attnviz.analysis).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QLabel, QListWidget, QMainWindow,
                               QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget)

from ..session import Session
from ..session.state import HEAD_FUSIONS

MODEL_FILTER = "Checkpoints (*.safetensors *.pth *.pt *.bin *.ckpt);;All files (*)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif);;All files (*)"


class AttentionView(pg.GraphicsLayoutWidget):
    """The network input with an attention heat map on top; a click picks the query patch."""

    def __init__(self, on_click):
        super().__init__()
        self.vb = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem()
        self.overlay = pg.ImageItem()
        self.overlay.setOpacity(0.6)
        self.overlay.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256))
        self.marker = pg.ScatterPlotItem(size=10, pen=pg.mkPen("c", width=2), brush=None, symbol="s")
        for item in (self.image, self.overlay, self.marker):
            self.vb.addItem(item)
        self._on_click = on_click
        self.scene().sigMouseClicked.connect(self._clicked)

    def show_input(self, img: np.ndarray) -> None:
        self.image.setImage(img)
        self.vb.autoRange(padding=0)

    def show_map(self, heat: np.ndarray | None, marker: tuple[float, float] | None) -> None:
        if heat is None:
            self.overlay.clear()
        else:
            lo, hi = float(np.min(heat)), float(np.max(heat))
            self.overlay.setImage(heat, levels=(lo, hi if hi > lo else lo + 1))
        self.marker.setData([] if marker is None else [{"pos": marker}])

    def _clicked(self, ev) -> None:
        p = self.vb.mapSceneToView(ev.scenePos())
        self._on_click(p.y(), p.x())


class MainWindow(QMainWindow):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.setWindowTitle("attnviz")
        self.resize(1000, 640)
        self.view = AttentionView(self._pick_pixel)

        self.block = QSlider(Qt.Orientation.Horizontal)
        self.block.valueChanged.connect(lambda v: session.set_view(block=v))
        self.block_label = QLabel("–")
        self.head = QComboBox()
        self.head.activated.connect(self._head_chosen)
        self.query_label = QLabel("–")
        self.reset_query = QPushButton("Reset query (class token / centre patch)")
        self.reset_query.clicked.connect(lambda: session.set_view(query=None))
        self.preds = QListWidget()
        self.info = QLabel("Open a model and an image (File menu).")
        self.info.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Block", self.block)
        form.addRow("", self.block_label)
        form.addRow("Head", self.head)
        form.addRow("Query", self.query_label)
        form.addRow("", self.reset_query)
        side = QWidget()
        lay = QVBoxLayout(side)
        lay.addWidget(self.info)
        lay.addLayout(form)
        lay.addWidget(QLabel("Top predictions"))
        lay.addWidget(self.preds)
        split = QSplitter()
        split.addWidget(self.view)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        self.setCentralWidget(split)
        self._menus()

        session.subscribe("model", self._model_changed)
        session.subscribe("capture", self._capture_changed)
        session.subscribe("view", self._view_changed)
        session.subscribe("error", self._error)
        session.subscribe("busy", lambda: self.statusBar().showMessage("Working…", 2000))

    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        for text, slot, key in (("Open &model…", self.open_model_dialog, "Ctrl+M"),
                                ("Open &image…", self.open_image_dialog, QKeySequence.StandardKey.Open),
                                ("&Quit", self.close, QKeySequence.StandardKey.Quit)):
            act = QAction(text, self)
            act.setShortcut(key)
            act.triggered.connect(slot)
            m.addAction(act)

    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", "", MODEL_FILTER)
        if path:
            self.session.open_model(path)

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.session.open_image(path)

    # -- session -> widgets ------------------------------------------------------------------------
    def _model_changed(self) -> None:
        info = self.session.model.info
        self.info.setText(f"<b>{info.name or info.path}</b><br>{info.family} · {info.source_format} · "
                          f"{self.session.model.device} · input {info.preprocess.input_size[0]}×"
                          f"{info.preprocess.input_size[1]}")
        self.statusBar().showMessage(f"Loaded {self.session.model_path}", 5000)

    def _capture_changed(self) -> None:
        cap = self.session.capture
        self.block.blockSignals(True)
        self.block.setRange(0, len(cap.blocks) - 1)
        self.block.setValue(self.session.block)
        self.block.blockSignals(False)
        self.view.show_input(self.session.input_image)
        self.preds.clear()
        preds = self.session.top_predictions(5)
        self.preds.addItems([f"{p * 100:5.1f}%  {name}" for name, p in preds] or ["(no classifier head)"])

    def _view_changed(self) -> None:
        s = self.session
        if s.capture is None:
            return
        b = s.capture.blocks[s.block]
        where = f"block {b.index}" + (f" · stage {b.stage} · window {b.window_size} · shift {b.shift_size}"
                                      if s.capture.family == "swin" else "")
        self.block_label.setText(where)
        items = list(HEAD_FUSIONS) + [f"head {h}" for h in range(b.num_heads)]
        self.head.blockSignals(True)
        self.head.clear()
        self.head.addItems(items)
        self.head.setCurrentIndex(items.index(s.head) if isinstance(s.head, str) else len(HEAD_FUSIONS) + s.head)
        self.head.blockSignals(False)
        heat, marker, label = s.current_map()
        self.query_label.setText(label)
        self.view.show_map(heat, marker)

    def _head_chosen(self, i: int) -> None:
        self.session.set_view(head=HEAD_FUSIONS[i] if i < len(HEAD_FUSIONS) else i - len(HEAD_FUSIONS))

    def _pick_pixel(self, y: float, x: float) -> None:
        self.session.pick_pixel(y, x)

    def _error(self) -> None:
        self.statusBar().showMessage(f"Error: {self.session.last_error}")
        self.info.setText(f"<span style='color:#c33'>{self.session.last_error}</span>")
