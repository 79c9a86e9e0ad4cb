"""A row of controls that wraps onto further lines instead of squeezing them.

A QHBoxLayout shrinks combo boxes below their text when its dock is narrow or the font is larger
(Ctrl+= while presenting), so 'inferno' reads 'infern'. :class:`FlowLayout` gives every widget its
size hint and starts a new line when the next one does not fit.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QStyle, QWidget


class FlowLayout(QLayout):
    """Widgets left to right at their size hints, wrapping to a new line where the width runs out."""

    def __init__(self, parent: QWidget | None = None, spacing: int = -1):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self.setContentsMargins(0, 0, 0, 0)

    # -- QLayout --------------------------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        """The minimum: a row of controls asks for no more width than its widest control, so docking a
        panel never widens the window; the row gets what its dock gives it and wraps to that."""
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        """As wide as the widest single widget: narrower than that nothing can be shown whole."""
        w = max((i.sizeHint().width() for i in self._items if not i.isEmpty()), default=0)
        m = self.contentsMargins()
        return QSize(w + m.left() + m.right(), self.heightForWidth(w + m.left() + m.right()))

    # -- placing ---------------------------------------------------------------------------------
    def _gap(self) -> int:
        if self._spacing >= 0:
            return self._spacing
        parent = self.parentWidget()
        style = parent.style() if parent is not None else None
        gap = style.pixelMetric(QStyle.PixelMetric.PM_LayoutHorizontalSpacing) if style is not None else -1
        return gap if gap >= 0 else 6

    def _lines(self, width: int) -> list[list[QLayoutItem]]:
        """The items of each line for a row ``width`` px wide (hidden widgets take no room)."""
        lines: list[list[QLayoutItem]] = [[]]
        used = 0
        for item in self._items:
            if item.isEmpty():
                continue
            w = item.sizeHint().width()
            line = lines[-1]
            need = w if not line else used + self._gap() + w
            if line and need > width:
                lines.append([item])
                used = w
            else:
                line.append(item)
                used = need
        return lines

    def _place(self, rect: QRect, move: bool) -> int:
        """Lay the items out in ``rect`` (``move``: set their geometry); returns the height used."""
        m = self.contentsMargins()
        inner = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        y, gap = inner.y(), self._gap()
        for line in self._lines(max(1, inner.width())):
            if not line:
                continue
            h = max(i.sizeHint().height() for i in line)
            x = inner.x()
            for item in line:
                size = item.sizeHint()
                if move:  # each line's items centred on the line's height
                    item.setGeometry(QRect(QPoint(x, y + (h - size.height()) // 2), size))
                x += size.width() + gap
            y += h + gap
        return max(0, y - gap - inner.y()) + m.top() + m.bottom()


def labelled(text: str, widget: QWidget) -> QWidget:
    """``text`` and ``widget`` side by side as one item, so that a wrapping row keeps them together."""
    from PySide6.QtWidgets import QHBoxLayout, QLabel

    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(QLabel(text))
    lay.addWidget(widget)
    return box
