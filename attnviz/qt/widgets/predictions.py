"""A model's top classes as one line of text, for the two sides of the Scramble and Compare panels.

The rows are :func:`attnviz.analysis.predictions.top_classes` (index, name, probability), most probable
first; the Predictions panel shows the same rows as a table.
"""
from __future__ import annotations

from html import escape
from typing import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

Row = tuple[int, str, float]
NO_CLASSIFIER = "No classifier head: nothing is predicted."


def prediction_text(rows: Sequence[Row]) -> str:
    """'Predicted face 97.1 % · noise 2.0 % · …' as plain text (tooltips, exports)."""
    if not rows:
        return NO_CLASSIFIER
    return "Predicted " + " · ".join(f"{name} {p * 100:.1f} %" for _i, name, p in rows)


def prediction_html(rows: Sequence[Row]) -> str:
    """The same line with the predicted class in bold (class names are escaped: they come from a file)."""
    if not rows:
        return NO_CLASSIFIER
    (_i, name, p), rest = rows[0], rows[1:]
    first = f"Predicted <b>{escape(name)}</b> {p * 100:.1f} %"
    tail = " · ".join(f"{escape(n)} {q * 100:.1f} %" for _j, n, q in rest)
    return first + (f" · {tail}" if tail else "")


class PredictionLabel(QLabel):
    """A wrapping rich-text label that shows prediction rows."""

    def __init__(self, parent=None):
        super().__init__("", parent)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.rows: list[Row] = []  # what is shown, for tests and export

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)
        self.setText(prediction_html(self.rows))
        self.setToolTip(prediction_text(self.rows))

    def clear_rows(self) -> None:
        """Nothing to show yet (no model B, no capture)."""
        self.rows = []
        self.setText("")
        self.setToolTip("")


__all__ = ["NO_CLASSIFIER", "PredictionLabel", "prediction_html", "prediction_text"]
