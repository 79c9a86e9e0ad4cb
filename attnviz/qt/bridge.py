"""Hands worker results to the GUI thread: the worker calls ``deliver(fn)``, Qt runs ``fn`` in the GUI loop."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal


class GuiDeliver(QObject):
    sig_call = Signal(object)

    def __init__(self):
        super().__init__()
        self.sig_call.connect(self._call, Qt.ConnectionType.QueuedConnection)

    def __call__(self, fn: Callable[[], None]) -> None:
        self.sig_call.emit(fn)

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        fn()
