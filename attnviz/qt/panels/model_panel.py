"""Model panel: what was loaded (family, format, geometry, tokens, windows), where it runs, the input size,
and the crop the preprocessing takes from the original image."""
from __future__ import annotations

import html
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QComboBox, QFormLayout, QGraphicsRectItem, QHBoxLayout, QLabel, QPushButton, QSpinBox

from ...nets.device import available_devices
from .base import Panel


def describe_model(session) -> list[tuple[str, str]]:
    """Rows (label, value) describing the loaded model and its current capture."""
    m, doc = session.model, session.doc
    cap = session.capture if doc.capture_model is m else None  # the new model's capture may not exist yet
    info, cfg = m.info, m.info.config
    n_params = sum(p.numel() for p in m.net.parameters())
    rows = [("Name", info.name or "—"), ("Family", _family(info)), ("Format", info.source_format),
            ("File", doc.model_path or info.path), ("Parameters", f"{n_params / 1e6:.2f} M"),
            ("Patch size", f"{cfg.patch_size} px")]
    if cap is not None:
        H, W = cap.img_size
        gh, gw = cap.grid_size
        rows.append(("Input", f"{H}×{W} px → {gh}×{gw} patches"))
        if cap.family == "vit":
            names = ", ".join(cap.prefix_names) or "none"
            rows.append(("Prefix tokens", f"{cap.num_prefix_tokens} ({names})"))
            rows.append(("Blocks × heads", f"{len(cap.blocks)} × {cap.blocks[0].num_heads}"))
            rows.append(("Position", "learned absolute embedding" if cfg.pos_embed == "learn" else
                         "none (a bag of patches)"))
        else:
            stages = {}
            for b in cap.blocks:
                st = stages.setdefault(b.stage, {"n": 0, "heads": b.num_heads, "grid": b.grid_size,
                                                 "M": b.window_size, "shifts": []})
                st["n"] += 1
                st["shifts"].append(b.shift_size)
            for s, st in stages.items():
                shifts = "/".join(str(x) for x in st["shifts"])
                rows.append((f"Stage {s}", f"{_n(st['n'], 'block')} · {_n(st['heads'], 'head')} · grid {st['grid'][0]}×"
                             f"{st['grid'][1]} · window {st['M']} · shifts {shifts}"))
            rows.append(("Position", "relative position bias" if cfg.version == 1 else
                         "continuous position bias (log-spaced MLP)"))
    if cap is None and doc.image is None:
        rows.append(("Input", "open an image (File → Open image, Ctrl+O) to run the model and see its attention"))
    rows += [("Classes", str(cap.logits.shape[-1]) if cap is not None and cap.logits is not None else
              ("no head" if cap is not None else "—")),
             ("Device", str(m.device)), ("dtype", str(m.dtype).replace("torch.", "")),
             ("Load time", f"{doc.load_seconds:.2f} s")]
    return rows


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _family(info) -> str:
    if info.family == "swin":
        return f"Swin v{info.config.version}"
    cfg = info.config
    kind = "DeiT (distilled)" if cfg.distilled else "ViT"
    if cfg.num_reg_tokens:
        kind += f" + {cfg.num_reg_tokens} registers"
    return kind


class ModelPanel(Panel):
    title = "Model"
    help_text = ("What the checkpoint holds, read from its files: the architecture, how the image is cut into "
                 "patches, which extra (prefix) tokens ride along, and for Swin the window size and shift of each "
                 "stage. The small picture shows the original image with the region the preprocessing keeps.")

    needs_capture = False  # what the checkpoint holds is known as soon as it is loaded

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        top = QHBoxLayout()
        self.heading = QLabel("No model loaded")
        self.heading.setStyleSheet("font-weight:600")
        self.heading.setWordWrap(True)
        top.addWidget(self.heading, 1)
        top.addWidget(self.help_button())
        self.body.addLayout(top)
        self.form = QFormLayout()
        self.body.addLayout(self.form)
        run = QFormLayout()
        self.device = QComboBox()
        self.device.setToolTip("Where the model runs; changing it reloads the model")
        self.dtype = QComboBox()
        for label in ("fp32", "fp16", "bf16"):
            self.dtype.addItem(label, label)
        self.gpu_note = QLabel("")
        self.gpu_note.setWordWrap(True)
        size_row = QHBoxLayout()
        self.size = QSpinBox()
        self.size.setRange(0, 2048)
        self.size.setSpecialValueText("checkpoint's own")
        self.size.setSingleStep(16)
        self.size.setToolTip("Input size in pixels (square); position embeddings are resampled as timm does")
        self.apply = QPushButton("Apply")
        self.apply.clicked.connect(self._apply)
        size_row.addWidget(self.size, 1)
        size_row.addWidget(self.apply)
        run.addRow("Device", self.device)
        run.addRow("", self.gpu_note)
        run.addRow("Precision", self.dtype)
        run.addRow("Input size", size_row)
        self.body.addLayout(run)
        self.crop = pg.GraphicsLayoutWidget()
        self.crop.setMinimumHeight(140)
        self.crop.setBackground(pg.mkColor(30, 30, 34))
        self.crop_vb = self.crop.addViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
        self.crop_img = pg.ImageItem()
        self.crop_box = QGraphicsRectItem()
        pen = QPen(QColor(80, 220, 255))
        pen.setCosmetic(True)
        pen.setWidthF(2)
        self.crop_box.setPen(pen)
        self.crop_vb.addItem(self.crop_img)
        self.crop_vb.addItem(self.crop_box)
        self.crop_caption = QLabel("")
        self.body.addWidget(QLabel("Original image and the network's crop"))
        self.body.addWidget(self.crop, 1)
        self.body.addWidget(self.crop_caption)
        self.box: Optional[tuple[float, float, float, float]] = None
        self._devices()
        self.device.activated.connect(lambda _i: session.reload(device=self.device.currentData()))
        self.dtype.activated.connect(lambda _i: session.reload(dtype=self.dtype.currentData()))
        session.model_loaded.connect(self.schedule)

    def _devices(self) -> None:
        devs = available_devices()
        self.device.clear()
        for label, value in devs:
            self.device.addItem(label, value)
        gpus = [v for _, v in devs if v.startswith(("cuda", "mps"))]
        self.gpu_note.setText("GPU: " + ", ".join(gpus) if gpus else "No GPU found on this machine: running on the CPU.")

    def _apply(self) -> None:
        px = self.size.value()
        self.session.reload(img_size=px or None)

    def refresh(self) -> None:
        s = self.session
        m = s.model
        if m is None:
            return
        self.heading.setText(html.escape(m.info.name or (s.doc.model_path or "")))
        while self.form.rowCount():
            self.form.removeRow(0)
        for label, value in describe_model(s):
            v = QLabel(html.escape(value))
            v.setWordWrap(True)
            self.form.addRow(label, v)
        i = self.device.findData(s.doc.device or "auto")
        self.device.setCurrentIndex(max(i, 0))
        self.dtype.setCurrentIndex(max(self.dtype.findData(s.doc.dtype or "fp32"), 0))
        self.size.setValue(s.doc.img_size or 0)
        self._draw_crop()

    def _draw_crop(self) -> None:
        from ...images import input_box

        s = self.session
        img = s.doc.image
        if img is None or s.model is None:
            return
        arr = np.asarray(img.convert("RGB"))  # (H, W, 3)
        self.crop_img.setImage(arr, autoLevels=False, levels=(0, 255))
        self.box = input_box(img.size, s.model.info.preprocess)
        x0, y0, x1, y1 = self.box
        self.crop_box.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.crop_vb.autoRange(padding=0.02)
        self.crop_caption.setText(f"original {img.size[0]}×{img.size[1]} px; the input covers x {x0:.0f}–{x1:.0f}, "
                                  f"y {y0:.0f}–{y1:.0f}")
