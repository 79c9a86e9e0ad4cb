"""What every panel shares: the session it follows, coalesced repaints, 'out of date' and help text.

A panel subscribes to the view fields it reads (``follow``) and repaints once per event-loop turn
however many of them changed (``schedule`` → ``refresh``); ``flush`` repaints now (tests, benchmarks).
A hidden panel only notes that it is dirty and repaints when it is shown again.
"""
from __future__ import annotations

from typing import Iterable

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QLabel, QToolButton, QVBoxLayout, QWidget

from ...session import Session


class Panel(QWidget):
    title = "Panel"
    help_text = ""  # two or three plain sentences for a student: what it draws, how, what to look for
    reads: tuple[str, ...] = ()  # view fields that trigger a repaint
    default_size = (400, 300)  # the share of the window the panel asks for when the docks are first laid out

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.flush)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(4, 4, 4, 4)
        self.body.setSpacing(4)
        self.stale = QLabel("")
        self.stale.setStyleSheet("background:#5a4a14;color:#ffe9a8;padding:3px;border-radius:3px")
        self.stale.setVisible(False)
        self.body.addWidget(self.stale)
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

    # -- wiring ---------------------------------------------------------------------------------
    def follow(self, names: Iterable[str]) -> None:
        for name in names:
            self.session.view.signal(name).connect(self._changed)

    def _changed(self, *args) -> None:
        self.schedule()

    def help_button(self) -> QToolButton:
        """A '?' toggle that shows the panel's plain-language explanation."""
        b = QToolButton()
        b.setText("?")
        b.setToolTip(f"What the {self.title} panel shows")
        b.setCheckable(True)
        b.toggled.connect(self.help.setVisible)
        return b

    def schedule(self) -> None:
        self._dirty = True
        if self.isVisible():
            self._timer.start()

    def flush(self) -> None:
        """Repaint now if anything changed since the last repaint."""
        self._timer.stop()
        if self._dirty and self.session.capture is not None:
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

    def _captured(self) -> None:
        self.stale.setVisible(False)
        try:
            self.on_capture()
        except Exception as e:
            self.session.report(RuntimeError(f"the {self.title} panel could not show the new capture: "
                                            f"{type(e).__name__}: {e}"))
        self._dirty = True
        if self.isVisible():
            self.flush()

    # -- for subclasses -------------------------------------------------------------------------
    def on_capture(self) -> None:
        """A new capture arrived (new model, image or input size): rebuild what depends on its shape."""

    def refresh(self) -> None:
        """Draw the current view state."""
