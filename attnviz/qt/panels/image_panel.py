"""Image panel: the network's input with the selected map over it, and the controls of how it is coloured."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QLabel, QSlider

from ...session.query import Patch, pixel_to_patch, vit_token
from ...session.shown import ShownMap, shown_map
from ...session.view_state import COLORMAPS
from ..widgets.choices import combo, select_data
from ..widgets.flow import FlowLayout, labelled
from ..widgets.overlay import OverlayView
from .base import Panel


class ImagePanel(Panel):
    title = "Image"
    help_text = ("The picture exactly as the network sees it (resized and cropped), with a map on top. "
                 "<b>Attention</b>: one row of softmax(QKᵀ/√d) — how much the query token (outlined in cyan) "
                 "takes from every patch in this block and head; bright = a large share. Click a patch to make "
                 "it the query, hover to read the value under the mouse; the wheel zooms, double-click fits.")
    reads = ("block", "head", "query", "method", "options", "class_idx", "colormap", "normalisation",
             "scale", "opacity", "overlay", "smooth", "show_grid")
    default_size = (760, 640)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        v = session.view
        bar = FlowLayout()  # wraps rather than squeezing the combos (narrow dock, larger text)
        self.overlay_mode = combo([("Colour", "colour"), ("Attention as alpha", "alpha")],
                                  "Colour: the map in colour at the chosen opacity. Alpha: the colour fades out "
                                  "where the value is low, so the photograph stays readable.")
        self.cmap = combo([(n, n) for n in COLORMAPS], "Colour map (perceptually uniform; CET-D1 is diverging)")
        self.norm = combo([("per map", "map"), ("per block", "block"), ("global", "global")],
                          "Colour range: this map alone, all heads of the block, or every block and head")
        self.scale = combo([("linear", "linear"), ("log", "log")], "Linear or log₁₀ colour scale")
        self.smooth = QCheckBox("smooth")
        self.smooth.setToolTip("Bilinear between patch centres instead of one colour per patch")
        self.grid = QCheckBox("grid")
        self.grid.setToolTip("Show the patch grid")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setMinimumWidth(70)
        self.opacity.setMaximumWidth(110)
        self.opacity.setToolTip("Overlay opacity")
        for w in (labelled("Overlay", self.overlay_mode), self.cmap, self.norm, self.scale, self.smooth, self.grid,
                  labelled("Opacity", self.opacity)):
            bar.addWidget(w)
        self.controls_row(bar)
        self.caption = QLabel("")
        self.caption.setStyleSheet("font-weight:600")
        self.caption.setWordWrap(True)
        self.body.addWidget(self.caption)
        self.view = OverlayView(colorbar=True)
        self.body.addWidget(self.view, 1)
        self.readout = QLabel("Hover over a patch to read its value")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.addWidget(self.readout)
        self.prefix = QLabel("")
        self.prefix.setWordWrap(True)
        self.body.addWidget(self.prefix)
        self.shown: Optional[ShownMap] = None

        self.overlay_mode.currentIndexChanged.connect(lambda _i: setattr(v, "overlay", self.overlay_mode.currentData()))
        self.cmap.currentIndexChanged.connect(lambda _i: setattr(v, "colormap", self.cmap.currentData()))
        self.norm.currentIndexChanged.connect(lambda _i: setattr(v, "normalisation", self.norm.currentData()))
        self.scale.currentIndexChanged.connect(lambda _i: setattr(v, "scale", self.scale.currentData()))
        self.smooth.toggled.connect(lambda on: setattr(v, "smooth", on))
        self.grid.toggled.connect(lambda on: setattr(v, "show_grid", on))
        self.opacity.valueChanged.connect(lambda x: setattr(v, "opacity", x / 100))
        self.view.sigClicked.connect(session.pick_pixel)
        self.view.sigHovered.connect(self._hovered)
        v.signal("hover").connect(lambda *_: self.show_hover())
        session.products.ready.connect(lambda name: self.schedule() if name == v.method else None)
        self._sync_controls()

    def _sync_controls(self) -> None:
        v = self.session.view
        select_data(self.overlay_mode, v.overlay)
        select_data(self.cmap, v.colormap)
        select_data(self.norm, v.normalisation)
        select_data(self.scale, v.scale)
        for box, on in ((self.smooth, v.smooth), (self.grid, v.show_grid)):
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        self.opacity.blockSignals(True)
        self.opacity.setValue(round(v.opacity * 100))
        self.opacity.blockSignals(False)

    def _hovered(self, y: float, x: float) -> None:
        g = self.session.geometry
        self.session.view.hover = None if g is None or y < 0 else pixel_to_patch(y, x, g)

    def on_capture(self) -> None:
        self.view.set_input(self.session.doc.input_image)

    def on_font_change(self) -> None:
        self.view.refresh_font()

    def refresh(self) -> None:
        s, v, g = self.session, self.session.view, self.session.geometry
        self._sync_controls()
        shown = shown_map(s)
        self.shown = shown
        caption = shown.title + (f" — {shown.note}" if shown.note else "")
        if caption != self.caption.text():  # a QLabel lays out its text again on every setText
            self.caption.setText(caption)
        self.view.set_map(shown.values, shown.token_px, shown.levels, v.scale, v.colormap, v.overlay == "alpha",
                          v.opacity, v.smooth, shown.window)
        self.view.set_grid(v.show_grid, g.patch_size, g.grid_size)
        q = v.query
        patch = (q.row, q.col) if isinstance(q, Patch) else None
        self.view.set_query(patch, g.patch_size, shown.query_cell, shown.token_px)
        self.show_hover()
        if shown.prefix is not None and len(shown.prefix):
            parts = [f"{name} {val:.4g}" for name, val in zip(g.prefix_names, shown.prefix)]
            self.prefix.setText(f"Attention the {q.label(list(g.prefix_names))} gives to prefix tokens (not on the "
                                "patch grid): " + " · ".join(parts))
        else:
            self.prefix.setText("")

    def show_hover(self) -> None:
        """Outline the hovered patch and read its value: no map is recomputed for a hover."""
        v, g, shown = self.session.view, self.session.geometry, self.shown
        if g is None or shown is None:
            return
        self.view.set_hover((v.hover.row, v.hover.col) if v.hover else None, g.patch_size)
        h = v.hover
        if h is None or shown.values is None:
            self.readout.setText("Hover over a patch to read its value")
            return
        f = max(shown.token_px // g.patch_size, 1)
        cy, cx = min(h.row // f, shown.values.shape[0] - 1), min(h.col // f, shown.values.shape[1] - 1)
        raw = float(shown.values[cy, cx])  # the map's own value, before any log scale
        token = vit_token(h, g) if g.family == "vit" else cy * shown.values.shape[1] + cx
        where = f"row {h.row}, col {h.col}" + (f" (stage token {cy}, {cx})" if f > 1 else "")
        self.readout.setText(f"{where} · token {token} · value {raw:.4g}")
