"""Predictions panel: the top classes with their probabilities; a click picks the class relevance explains."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem

from .base import Panel

TOP_K = 10


class PredictionsPanel(Panel):
    title = "Predictions"
    help_text = ("The classifier's most probable classes: softmax of the logits. Click a class to make it the one "
                 "the relevance maps explain (by default the predicted class). A backbone without a classifier "
                 "head (DINO, DINOv2) predicts nothing.")
    reads = ("class_idx",)
    default_size = (420, 200)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        top = QHBoxLayout()
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        top.addWidget(self.caption, 1)
        self.predicted = QPushButton("Use predicted")
        self.predicted.setToolTip("Relevance explains the predicted class again")
        self.predicted.clicked.connect(lambda: setattr(session.view, "class_idx", None))
        top.addWidget(self.predicted)
        top.addWidget(self.help_button())
        self.body.addLayout(top)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Class", "Probability", ""])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)  # the relevance class is shown in bold
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.cellClicked.connect(self._clicked)
        self.body.addWidget(self.table, 1)
        self.rows: list[tuple[int, str, float]] = []

    def on_capture(self) -> None:
        """Fill the table with the new capture's top classes, reusing its cells (a new image keeps the
        row count: only texts and bars change)."""
        self.rows = self.session.predictions(TOP_K)
        self.table.setRowCount(len(self.rows))
        for r, (idx, name, p) in enumerate(self.rows):
            item, num, bar = self.table.item(r, 0), self.table.item(r, 1), self.table.cellWidget(r, 2)
            if item is None:
                item, num = QTableWidgetItem(), QTableWidgetItem()
                num.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, 0, item)
                self.table.setItem(r, 1, num)
            if bar is None:
                bar = QProgressBar()
                bar.setRange(0, 1000)
                bar.setTextVisible(False)
                bar.setMaximumHeight(12)
                self.table.setCellWidget(r, 2, bar)
            item.setText(f"{name}")
            item.setToolTip(f"class {idx}")
            num.setText(f"{p * 100:.2f} %")
            bar.setValue(round(p * 1000))

    def _clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self.rows):
            self.session.view.class_idx = self.rows[row][0]

    def refresh(self) -> None:
        cap = self.session.capture
        if cap.logits is None:
            self.caption.setText("This model has no classifier head (a backbone): it predicts no class.")
            return
        c = self.session.view.class_idx
        predicted = self.rows[0][1] if self.rows else "?"
        if c is None:
            self.caption.setText(f"Predicted: <b>{predicted}</b>. Relevance explains the predicted class.")
        else:
            names = self.session.model.class_names
            name = names[c] if names and c < len(names) else f"class {c}"
            self.caption.setText(f"Predicted: <b>{predicted}</b>. Relevance explains <b>{name}</b>.")
        target = self.rows[0][0] if c is None and self.rows else c
        for r, (idx, _n, _p) in enumerate(self.rows):
            for col in (0, 1):
                it = self.table.item(r, col)
                if it is not None:
                    f = it.font()
                    f.setBold(idx == target)
                    it.setFont(f)
                    it.setForeground(QColor(80, 220, 255) if idx == target else self.palette().text().color())
