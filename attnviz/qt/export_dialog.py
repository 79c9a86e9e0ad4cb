"""The app's export: a dialog for figures and animations, and the File-menu actions around it.

The actions (each takes the parent widget and the session; failures go to ``session.report``):
  export_figure      Export figure…      a view, or a composed figure of the views ticked, as PNG / SVG / PDF
  export_animation   Export animation…   a view stepped through every block (or head) as GIF / MP4
  export_arrays      Export arrays…      the arrays a view draws, as .npz
  save_view          Save view…          the view state as JSON (reopens the exact view)
  open_view          Open view…          such a JSON: model, image, then the view
  copy_figure        Copy figure         the figure as an image on the clipboard

Every write goes through attnviz.export (atomic; an existing file is replaced only after the user
confirms). The products an export needs (flow, relevance with its backward pass, ...) are computed on
the session's worker, which owns the model, while a progress dialog says so (Cancel stops it); the
figure is then drawn and written here, on the GUI thread (:func:`run_export`). Dialog pieces are
separate from the file choosers so tests drive them with a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QMessageBox,
                               QProgressDialog, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from ..export.views import EXPORT_VIEWS, FIGURE_PARTS, VIEWS
from .figures.render import RENDERER

FIGURE_FILTER = "PNG image (*.png);;SVG vector figure (*.svg);;PDF document (*.pdf)"
ANIMATION_FILTER = "GIF animation (*.gif);;MP4 video (*.mp4)"
# the view a panel exports as "the selected panel" (dock name -> view)
PANEL_VIEWS = {"image": "overlay", "heads": "heads", "maps": "rollout", "stats": "stats", "posembed": "pos-embed",
               "swin": "windows", "anatomy": "anatomy",
               "scramble": "scramble"}
VIEW_NAMES = {"overlay": "Attention over the image", "heads": "Heads of the block", "rollout": "Rollout",
              "flow": "Attention flow", "relevance": "Class relevance", "pos-embed": "Position-embedding similarity",
              "windows": "Swin windows, mask and bias", "stats": "Head statistics", "input": "Input image",
              "figure": "Composed figure"}


def panel_view(name: str, session) -> str:
    """The view that exports the panel docked as ``name`` (the Image panel: the map it shows)."""
    if name == "image":
        m = session.view.method
        return {"attention": "overlay", "rollout": "rollout", "flow": "flow"}.get(m, "relevance")
    return PANEL_VIEWS.get(name, "figure")


def _view_name(v: str) -> str:
    return VIEW_NAMES.get(v, VIEWS[v].title if v in VIEWS else v)


def confirm_overwrite(parent: Optional[QWidget], path: str) -> bool:
    """Ask before replacing an existing file (True: go ahead)."""
    if not Path(path).exists():
        return True
    answer = QMessageBox.question(parent, "Replace file?", f"{path} exists. Replace it?",
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def _with_suffix(path: str, selected_filter: str, default: str) -> str:
    """Add the suffix of the chosen filter when the user typed none."""
    if Path(path).suffix:
        return path
    for suffix in (".png", ".svg", ".pdf", ".gif", ".mp4", ".npz", ".json"):
        if f"*{suffix}" in selected_filter:
            return path + suffix
    return path + default


class ExportDialog(QDialog):
    """Choose what (one view, or the views of a composed figure), how large, and for animations what steps."""

    def __init__(self, session, parent: Optional[QWidget] = None, animation: bool = False,
                 view: Optional[str] = None):
        super().__init__(parent)
        self.session = session
        self.animation = animation
        self.setWindowTitle("Export animation" if animation else "Export figure")
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.view = QComboBox()
        for v in EXPORT_VIEWS:
            self.view.addItem(_view_name(v), v)
        self.view.setCurrentIndex(max(0, self.view.findData(view or "figure")))
        self.view.setToolTip("One view, or a composed figure of the views ticked below")
        form.addRow("View", self.view)
        self.parts_box = QGroupBox("Views in the composed figure")
        grid = QGridLayout(self.parts_box)
        self.parts: dict[str, QCheckBox] = {}
        for i, name in enumerate(FIGURE_PARTS):
            box = QCheckBox(_view_name(name))
            box.setChecked(True)
            self.parts[name] = box
            grid.addWidget(box, i // 2, i % 2)
        lay.addLayout(form)
        lay.addWidget(self.parts_box)
        size = QGroupBox("Size")
        sl = QGridLayout(size)
        self.by_dpi = QRadioButton("DPI")
        self.by_px = QRadioButton("Pixels")
        group = QButtonGroup(self)
        group.addButton(self.by_dpi)
        group.addButton(self.by_px)
        self.by_dpi.setChecked(True)
        self.dpi = QSpinBox()
        self.dpi.setRange(24, 1200)
        self.dpi.setValue(150 if animation else 300)
        self.dpi.setToolTip("PNG: the figure's natural size (in inches at 96 dpi) at this resolution; PDF: the "
                            "resolution its images are placed at; SVG: the stated resolution")
        self.width_px, self.height_px = QSpinBox(), QSpinBox()
        for w, v in ((self.width_px, 1600), (self.height_px, 1000)):
            w.setRange(16, 20000)
            w.setValue(v)
        sl.addWidget(self.by_dpi, 0, 0)
        sl.addWidget(self.dpi, 0, 1)
        sl.addWidget(self.by_px, 1, 0)
        px = QHBoxLayout()
        px.addWidget(self.width_px)
        px.addWidget(QLabel("×"))
        px.addWidget(self.height_px)
        sl.addLayout(px, 1, 1)
        lay.addWidget(size)
        self.step = QComboBox()
        self.step.addItem("every block", "block")
        self.step.addItem("every head of the block", "head")
        self.fps = QDoubleSpinBox()
        self.fps.setRange(0.2, 30)
        self.fps.setValue(2.0)
        anim = QFormLayout()
        anim.addRow("Frames", self.step)
        anim.addRow("Frames per second", self.fps)
        self.anim_box = QGroupBox("Animation")
        self.anim_box.setLayout(anim)
        self.anim_box.setVisible(animation)
        lay.addWidget(self.anim_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.view.currentIndexChanged.connect(lambda _i: self._sync())
        self.by_dpi.toggled.connect(lambda _on: self._sync())
        self._sync()

    def _sync(self) -> None:
        self.parts_box.setEnabled(self.chosen_view() == "figure")
        self.dpi.setEnabled(self.by_dpi.isChecked())

    def chosen_view(self) -> str:
        return self.view.currentData()

    def chosen_parts(self) -> Optional[list[str]]:
        if self.chosen_view() != "figure":
            return None
        return [n for n, box in self.parts.items() if box.isChecked()]

    def size_args(self) -> tuple[Optional[tuple[int, int]], Optional[float]]:
        if self.by_px.isChecked():
            return (self.width_px.value(), self.height_px.value()), None
        return None, float(self.dpi.value())

    def export_to(self, path: str, force: bool = False) -> Optional[bool]:
        """Write the chosen export to ``path`` (see :func:`run_export` for what is returned; a failure is
        reported to the session)."""
        from ..export.outputs import plan_view

        size, dpi = self.size_args()
        parts = self.chosen_parts()
        if parts == []:
            self.session.report(ValueError("tick at least one view for the composed figure"))
            return False
        view, step, fps = self.chosen_view(), self.step.currentData(), self.fps.value()
        return run_export(self.parentWidget(), self.session, f"{_view_name(view).lower()} to {Path(path).name}",
                          lambda src: plan_view(src, view, path, size, dpi, force, step, fps, parts, RENDERER))


def run_export(parent: Optional[QWidget], session, what: str, plan, finish=None) -> Optional[bool]:
    """Compute an export on the session's worker and write it here.

    ``plan(source)`` runs on the worker (the model is used there only) and returns what to do on the GUI
    thread: a callable that draws and writes the file, or, with ``finish``, a value passed to
    ``finish(value)``. A progress dialog shows while the worker computes (Cancel, or the window's Cancel,
    stops it: nothing is written). Returns True when written, False when it failed (reported to the
    session), None while it is still running (a threaded worker; the result is reported when it ends).
    """
    from ..export.source import Source

    try:
        src = Source.of_session(session)  # on the GUI thread: the view copied, the app's products reused
    except Exception as e:  # noqa: BLE001
        session.report(e)
        return False
    outcome: list[bool] = []
    progress = QProgressDialog(f"Exporting {what}…", "Cancel", 0, 0, parent)
    progress.setWindowTitle("Export")
    progress.setWindowModality(Qt.WindowModality.WindowModal)
    progress.setMinimumDuration(400)  # quick exports never flash a dialog

    def close() -> None:
        try:
            session.cancelled.disconnect(on_cancelled)
        except (TypeError, ValueError, RuntimeError):
            pass
        progress.reset()
        progress.deleteLater()

    def work(job):
        src.job = job  # attention flow polls it, and stops when the export is cancelled
        return plan(src)

    def done(result) -> None:
        close()
        try:
            finish(result) if finish is not None else result()
        except Exception as e:  # noqa: BLE001 - every failure becomes one message, the app goes on
            session.report(e)
            outcome.append(False)
        else:
            outcome.append(True)
            status = getattr(parent, "statusBar", None)
            if status is not None:  # the window says it is done (a file dialog gives no other sign)
                status().showMessage(f"Exported {what}", 8000)

    def failed(e: BaseException) -> None:
        close()
        session.report(e)
        outcome.append(False)

    def on_cancelled() -> None:  # the window's Cancel: the worker dropped the export
        close()

    session.cancelled.connect(on_cancelled)
    job = session.worker.submit("export", work, done, failed, pass_job=True)
    if outcome:
        return outcome[0]
    progress.canceled.connect(lambda: (job.cancel(), close()))
    return None


def _ask_path(parent, title: str, filters: str, default: str, suggested: str) -> Optional[str]:
    path, selected = QFileDialog.getSaveFileName(parent, title, suggested, filters,
                                                 options=QFileDialog.Option.DontConfirmOverwrite)
    if not path:
        return None
    return _with_suffix(path, selected, default)


def _suggested(session, what: str, suffix: str) -> str:
    stem = Path(session.doc.image_path or "attnviz").stem
    return f"{stem}-{what}{suffix}"


def _run_dialog(parent, session, animation: bool, view: Optional[str]) -> Optional[bool]:
    dlg = ExportDialog(session, parent, animation=animation, view=view)
    if dlg.exec() != QDialog.DialogCode.Accepted:
        return False
    filters, default = (ANIMATION_FILTER, ".gif") if animation else (FIGURE_FILTER, ".png")
    path = _ask_path(parent, dlg.windowTitle(), filters, default, _suggested(session, dlg.chosen_view(), default))
    if path is None or not confirm_overwrite(parent, path):
        return False
    return dlg.export_to(path, force=True)


def export_figure(parent, session, view: Optional[str] = None) -> bool:
    """File → Export figure…: ``view`` preselects a view (the selected panel's, see PANEL_VIEWS)."""
    return _run_dialog(parent, session, False, view)


def export_animation(parent, session, view: Optional[str] = None) -> bool:
    """File → Export animation…"""
    return _run_dialog(parent, session, True, view or "overlay")


def export_arrays(parent, session, view: str = "figure", path: Optional[str] = None) -> bool:
    """File → Export arrays…: the arrays of ``view`` (default every view that applies) as .npz."""
    from ..export.outputs import plan_view

    if path is None:
        path = _ask_path(parent, "Export arrays", "NumPy arrays (*.npz)", ".npz", _suggested(session, view, ".npz"))
        if path is None or not confirm_overwrite(parent, path):
            return False
    return run_export(parent, session, f"arrays to {Path(path).name}",
                      lambda src: plan_view(src, view, path, force=True))


def save_view(parent, session, path: Optional[str] = None) -> bool:
    """File → Save view…: model, image and view state as JSON."""
    from ..export.view_file import ViewFile

    if path is None:
        path = _ask_path(parent, "Save view", "attnviz view (*.json)", ".json", _suggested(session, "view", ".json"))
        if path is None or not confirm_overwrite(parent, path):
            return False
    try:
        ViewFile.of_session(session).save(path, force=True)
    except Exception as e:  # noqa: BLE001
        session.report(e)
        return False
    return True


def open_view(parent, session, path: Optional[str] = None) -> bool:
    """File → Open view… (and ``attnviz --state VIEW.json``): opens the model and image, then the view."""
    from ..export.view_file import ViewFile, open_view as open_in_session

    if path is None:
        path, _sel = QFileDialog.getOpenFileName(parent, "Open view", "", "attnviz view (*.json)")
        if not path:
            return False
    try:
        open_in_session(session, ViewFile.load(path))
    except Exception as e:  # noqa: BLE001
        session.report(e)
        return False
    return True


def copy_figure(parent, session, view: str = "figure", dpi: float = 144) -> Optional[bool]:
    """Copy the figure of ``view`` to the clipboard as an image (computed on the worker, drawn here)."""
    from PySide6.QtGui import QGuiApplication

    from ..export.views import figure_of
    from .figures.render import to_qimage

    return run_export(parent, session, "the figure to the clipboard", lambda src: figure_of(src, view),
                      lambda fig: QGuiApplication.clipboard().setImage(to_qimage(fig, dpi=dpi)))


__all__ = ["ExportDialog", "run_export", "export_figure", "export_animation", "export_arrays", "save_view", "open_view",
           "copy_figure", "confirm_overwrite", "panel_view", "PANEL_VIEWS"]
