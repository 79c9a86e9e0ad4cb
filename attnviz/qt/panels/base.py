"""What every panel shares: the session it follows, coalesced repaints, 'out of date' and help text.

A panel subscribes to the view fields it reads (``follow``) and repaints once per event-loop turn
however many of them changed (``schedule`` → ``refresh``); ``flush`` repaints now (tests, benchmarks).
A panel that is not on screen only notes that it is dirty and repaints when it is shown again; that
includes a dock tabbed behind another, which Qt keeps "visible" (moved off the window): it repaints
when its tab is selected (``QDockWidget.visibilityChanged``).

The "Out of date" notice floats over the top of the panel instead of taking a row of its layout: a
row that appears when a load starts and goes when it ends resized every plot twice per image opened
(30–50 ms each). When the application font changes (Ctrl+= while presenting) ``on_font_change`` runs
once, so that plot text drawn by pyqtgraph follows the widgets' text.
"""
from __future__ import annotations

from typing import Iterable, Optional

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QLabel, QLayout, QToolButton, QVBoxLayout, QWidget

from ...session import Session


class Notice(QLabel):
    """A label that floats over the top edge of its parent (no layout row), above the other children."""

    def place(self) -> None:
        parent = self.parentWidget()
        if parent is not None:
            self.setGeometry(4, 4, max(parent.width() - 8, 10), self.sizeHint().height())

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self.place()
        self.raise_()

    def setText(self, text: str) -> None:
        super().setText(text)
        if self.isVisible():
            self.place()


class Panel(QWidget):
    title = "Panel"
    help_text = ""  # two or three plain sentences for a student: what it draws, how, what to look for
    reads: tuple[str, ...] = ()  # view fields that trigger a repaint
    default_size = (400, 300)  # the share of the window the panel asks for when the docks are first laid out
    needs_capture = True  # False: the panel draws from the model alone (before any image is open)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self._dirty = False
        self._dock: Optional[QDockWidget] = None  # found when first needed (the window docks the panel later)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.flush)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(4, 4, 4, 4)
        self.body.setSpacing(4)
        self.stale = Notice("", self)  # over the panel, not in its layout: showing it moves nothing
        self.stale.setStyleSheet("background:rgba(90,74,20,225);color:#ffe9a8;padding:3px;border-radius:3px")
        self.stale.setVisible(False)
        self._font_timer = QTimer(self)
        self._font_timer.setSingleShot(True)
        self._font_timer.setInterval(0)
        self._font_timer.timeout.connect(self._font_changed)
        self.help = QLabel(self.help_text)
        self.help.setWordWrap(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        self.help.setStyleSheet("color:palette(text);background:palette(alternate-base);padding:6px;border-radius:4px")
        self.help.setVisible(False)
        self.body.addWidget(self.help)
        self.follow(self.reads)
        session.busy.connect(self._busy)
        session.captured.connect(self._captured)
        session.error.connect(lambda _msg: self.stale.setVisible(False))
        session.cancelled.connect(lambda: self.stale.setVisible(False))

    def sizeHint(self) -> QSize:
        return QSize(*self.default_size)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self.stale.isVisible():
            self.stale.place()

    def event(self, ev) -> bool:
        if ev.type() in (QEvent.Type.ApplicationFontChange, QEvent.Type.FontChange):
            self._font_timer.start()  # once, however many font events one change sends
        return super().event(ev)

    def _font_changed(self) -> None:
        try:
            self.on_font_change()
        except Exception as e:
            self.session.report(RuntimeError(f"the {self.title} panel could not follow the text size: "
                                            f"{type(e).__name__}: {e}"))

    # -- wiring ---------------------------------------------------------------------------------
    def follow(self, names: Iterable[str]) -> None:
        for name in names:
            self.session.view.signal(name).connect(self._changed)

    def _changed(self, *args) -> None:
        self.schedule()

    def caption_row(self, *extra: QWidget) -> QHBoxLayout:
        """The panel's first row: a bold, wrapping caption (``self.caption``), any ``extra`` widgets, then
        the '?' help toggle."""
        row = QHBoxLayout()
        self.caption = QLabel("")
        self.caption.setStyleSheet("font-weight:600")
        self.caption.setWordWrap(True)
        row.addWidget(self.caption, 1)
        for w in extra:
            row.addWidget(w)
        row.addWidget(self.help_button())
        self.body.addLayout(row)
        return row

    def controls_row(self, flow: QLayout) -> None:
        """Add the panel's row of controls (a wrapping FlowLayout, held by ``self.controls`` so that its
        height follows its width) with the '?' help toggle at the right of its first line."""
        self.controls = QWidget()
        self.controls.setLayout(flow)
        row = QHBoxLayout()
        row.addWidget(self.controls, 1)
        row.addWidget(self.help_button(), 0, Qt.AlignmentFlag.AlignTop)
        self.body.addLayout(row)

    def help_button(self) -> QToolButton:
        """A '?' toggle that shows the panel's plain-language explanation."""
        b = QToolButton()
        b.setText("?")
        b.setToolTip(f"What the {self.title} panel shows")
        b.setCheckable(True)
        b.toggled.connect(self.help.setVisible)
        return b

    def on_screen(self) -> bool:
        """Shown, and not in a dock tab behind another (those have no visible region)."""
        if not self.isVisible() or self.visibleRegion().isEmpty():
            self._watch_dock()
            return False
        return True

    def _watch_dock(self) -> None:
        """Repaint when the dock holding the panel comes to the front of its tab group."""
        if self._dock is not None:
            return
        w = self.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        if w is not None:
            self._dock = w
            w.visibilityChanged.connect(lambda on: self._timer.start() if on and self._dirty else None)

    def schedule(self) -> None:
        self._dirty = True
        if self.on_screen():
            self._timer.start()

    def flush(self) -> None:
        """Repaint now if anything changed since the last repaint."""
        self._timer.stop()
        if self._dirty and (self.session.capture is not None or not self.needs_capture):
            self._dirty = False
            try:
                self.refresh()
            except Exception as e:  # a panel that cannot draw says so; the others and the app go on
                self.session.report(RuntimeError(f"the {self.title} panel could not draw this view: "
                                                f"{type(e).__name__}: {e}"))

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if self._dirty:
            self._timer.start()

    def _busy(self, what: str) -> None:
        if self.session.capture is not None:
            self.stale.setText(f"Out of date: {what}…")
            self.stale.setVisible(True)

    def adopt_capture(self) -> None:
        """Show the session's current capture (a panel built after it arrived)."""
        self._captured()

    def _captured(self) -> None:
        self.stale.setVisible(False)
        try:
            self.on_capture()
        except Exception as e:
            self.session.report(RuntimeError(f"the {self.title} panel could not show the new capture: "
                                            f"{type(e).__name__}: {e}"))
        self._dirty = True
        if self.on_screen():
            self.flush()

    # -- for subclasses -------------------------------------------------------------------------
    def on_capture(self) -> None:
        """A new capture arrived (new model, image or input size): rebuild what depends on its shape."""

    def refresh(self) -> None:
        """Draw the current view state."""

    def on_font_change(self) -> None:
        """The application font changed: restyle text that does not follow it by itself (pyqtgraph's)."""
