"""The model browser: the checkpoints already on this machine, what each is, before any is loaded.

A thin view over :mod:`attnviz.checkpoints.browse`: it lists the shipped demo models, the Hugging Face
and torch hub caches and the folders the user adds, grouped by where they were found, with the family,
architecture and size on disk the detector reads. Listing and detection run on a small thread pool
(results come back to the GUI thread through :class:`~attnviz.qt.bridge.GuiDeliver`), so a large cache
never freezes the window; rows say 'detecting…' until their description arrives. Opening a row only
emits :attr:`ModelBrowser.sigOpen`; the main window decides what loading means. The widget is meant
to sit in a QDockWidget or a dialog.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ..checkpoints.browse import (HF_CACHE_LABEL, TORCH_HUB_LABEL, Description, Entry, Problem, describe,
                                  find_checkpoints, hf_hub_cache, human_size, torch_hub_checkpoints)
from .bridge import GuiDeliver

SETTINGS_KEY = "browser/folders"
COLUMNS = ("Name", "Family", "Architecture", "Size", "Path")
COL_NAME, COL_FAMILY, COL_ARCH, COL_SIZE, COL_PATH = range(len(COLUMNS))
DETECTING = "detecting…"
FAMILY_NAMES = {"vit": "ViT", "swin": "Swin"}
HELP = ("Checkpoints in the demo folder, the Hugging Face and torch hub caches, and the folders you add, "
        "with the architecture read from their config and tensor shapes. Nothing is loaded until you open "
        "one (double-click or Open).")

# Item data (column 0): what a row stands for.
_PATH_ROLE = Qt.ItemDataRole.UserRole  # a checkpoint row: the path sigOpen emits
_GROUP_ROLE = Qt.ItemDataRole.UserRole + 1  # a group row: its key, ('folder', path) for user folders
_ERROR_BRUSH = QBrush(QColor(192, 57, 43))  # readable on light and dark palettes


class ModelBrowser(QWidget):
    """A tree of the checkpoints found on disk, grouped by origin, with Add/Remove folder, Rescan, Open.

    ``settings`` keeps the user's folders (key ``browser/folders``); ``demo_dir`` is the folder of
    shipped demo models; ``synchronous=True`` runs listing and detection inline (tests, scripts).
    The first scan starts at construction.
    """

    sigOpen = Signal(str)  # the path of the checkpoint to load (double-click, Enter or Open)
    sigScanFinished = Signal()  # the latest scan's listing and every description are in

    def __init__(self, settings: QSettings, demo_dir: Path, synchronous: bool = False,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.settings = settings
        self.demo_dir = Path(os.path.abspath(demo_dir))  # rows and sigOpen carry absolute paths
        self.synchronous = synchronous
        self._generation = 0  # bumped by every rescan; results of older scans are dropped
        self._pending = 0  # descriptions of the current scan not yet shown
        self._scanning = False  # the current scan's listing has not arrived yet
        self._futures: list[Future] = []
        self._items: dict[str, QTreeWidgetItem] = {}  # checkpoint path -> its row
        # Descriptions by (path, size on disk): a rescan re-describes only what changed.
        self._described: dict[tuple[str, int], Description] = {}
        self._pool: Optional[ThreadPoolExecutor] = None
        if not synchronous:
            pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="attnviz-browse")
            self._pool = pool
            # Captures the pool, not self: the worker threads end with the widget.
            self.destroyed.connect(lambda *_: pool.shutdown(wait=False, cancel_futures=True))
        self._deliver = GuiDeliver()
        self._deliver.setParent(self)  # deleted with the widget: late results go nowhere

        self.help = QLabel(HELP)
        self.help.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in ((COL_NAME, 240), (COL_FAMILY, 60), (COL_ARCH, 330), (COL_SIZE, 80)):
            self.tree.setColumnWidth(col, width)
        self.tree.itemActivated.connect(self._activated)
        self.tree.itemSelectionChanged.connect(self._update_buttons)

        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove folder")
        self.rescan_button = QPushButton("Rescan")
        self.open_button = QPushButton("Open")
        self.add_button.setToolTip("Add a folder to search for checkpoints (and two folder levels below it)")
        self.remove_button.setToolTip("Stop listing the selected folder (its files are not touched)")
        self.rescan_button.setToolTip("Look through the caches and folders again")
        self.open_button.setToolTip("Load the selected checkpoint")
        self.add_button.clicked.connect(self.add_folder_dialog)
        self.remove_button.clicked.connect(self._remove_selected_folder)
        self.rescan_button.clicked.connect(self.rescan)
        self.open_button.clicked.connect(self.open_selected)
        self.status = QLabel()

        buttons = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.rescan_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.help)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._update_buttons()
        self.rescan()

    # -- the user's folders ------------------------------------------------------------------

    def folders(self) -> list[str]:
        """The folders the user added, in the order added, as stored in the settings."""
        value = self.settings.value(SETTINGS_KEY, [])
        if value is None:
            return []
        if isinstance(value, str):  # QSettings gives a one-item list back as a plain string
            value = [value]
        return [str(v) for v in value if str(v)]

    def _store(self, folders: list[str]) -> None:
        self.settings.setValue(SETTINGS_KEY, folders)
        self.settings.sync()

    def add_folder(self, path: str | os.PathLike[str]) -> None:
        """List ``path`` from now on (remembered in the settings) and rescan."""
        folder = os.path.abspath(os.path.expanduser(os.fspath(path)))
        folders = self.folders()
        if folder not in folders:
            self._store(folders + [folder])
        self.rescan()

    def remove_folder(self, path: str | os.PathLike[str]) -> None:
        """Stop listing ``path`` (the files stay where they are) and rescan."""
        folder = os.fspath(path)
        self._store([f for f in self.folders() if f != folder and os.path.abspath(f) != os.path.abspath(folder)])
        self.rescan()

    def add_folder_dialog(self) -> None:
        """The 'Add folder…' button: pick a folder, then :meth:`add_folder`."""
        start = self.folders()[-1] if self.folders() else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of checkpoints", start)
        if folder:
            self.add_folder(folder)

    def _remove_selected_folder(self) -> None:
        folder = self._selected_folder()
        if folder is not None:
            self.remove_folder(folder)

    # -- scanning ---------------------------------------------------------------------------

    def rescan(self) -> None:
        """List every origin again; descriptions of unchanged checkpoints are reused."""
        self._generation += 1
        generation = self._generation
        for f in self._futures:
            f.cancel()  # only those not started yet; a running one finishes and is dropped
        self._futures = []
        self._pending = 0
        self.status.setText("Scanning…")
        demo_dir, folders = self.demo_dir, self.folders()

        def scan() -> tuple[list[Entry], list[Problem]]:
            problems: list[Problem] = []
            return find_checkpoints(demo_dir, folders, problems), problems

        self._scanning = True
        self._run(generation, scan, lambda result: self._listed(generation, folders, result))

    def is_busy(self) -> bool:
        """Whether the latest scan is still listing or describing."""
        return self._scanning or self._pending > 0

    def _run(self, generation: int, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """``fn`` off the GUI thread (inline when synchronous); ``done(result)`` on the GUI thread,
        unless a rescan has started since."""
        def finish(result: Any) -> None:
            if generation == self._generation:
                done(result)

        if self._pool is None:
            finish(fn())
            return

        def delivered(future: Future) -> None:
            if future.cancelled():
                return
            try:
                result = future.result()
            except Exception as e:  # describe and find_checkpoints do not raise; a bug should not hang the view
                result = e
            try:
                self._deliver(lambda: finish(result))
            except RuntimeError:  # the widget is gone
                pass

        future = self._pool.submit(fn)
        self._futures.append(future)
        future.add_done_callback(delivered)

    def _listed(self, generation: int, folders: list[str], result: Any) -> None:
        self._scanning = False
        self.tree.clear()
        self._items = {}
        if isinstance(result, Exception):  # not expected: find_checkpoints skips what it cannot read
            self.status.setText(f"Scan failed: {result}")
            self.sigScanFinished.emit()
            return
        entries, problems = result
        groups = self._groups(folders)
        for entry in entries:
            key = ("folder", str(entry.root)) if entry.origin == "folder" else (entry.origin, "")
            group = groups.get(key)
            if group is None:
                continue
            self._items[str(entry.path)] = self._row(group, entry)
        for problem in problems:
            group = groups.get(("folder", str(problem.path)))
            if group is not None:
                row = QTreeWidgetItem(group, [problem.message])
                row.setForeground(COL_NAME, _ERROR_BRUSH)
                row.setFlags(Qt.ItemFlag.ItemIsEnabled)
        for group in groups.values():
            n = group.childCount()
            if n == 0:
                empty = QTreeWidgetItem(group, ["no checkpoints found"])
                empty.setFlags(Qt.ItemFlag.NoItemFlags)
            elif group.child(0).data(0, _PATH_ROLE):
                group.setText(COL_NAME, f"{group.text(COL_NAME)} ({n})")
            group.setExpanded(True)

        todo = []
        for entry in entries:
            item = self._items.get(str(entry.path))
            if item is None:
                continue
            known = self._described.get((str(entry.path), entry.size_bytes))
            if known is not None:
                self._show(item, known)
            else:
                todo.append(entry)
        self._pending = len(todo)
        self._update_status()
        for entry in todo:
            self._run(generation, lambda e=entry: describe(e), lambda d, e=entry: self._described_one(e, d))
        self._update_buttons()
        if not todo:
            self.sigScanFinished.emit()

    def _groups(self, folders: list[str]) -> dict[tuple[str, str], QTreeWidgetItem]:
        """The group rows, always shown so the user sees where the browser looked."""
        bold = QFont(self.tree.font())
        bold.setBold(True)
        specs = [(("demo", ""), "Demo models", self.demo_dir),
                 (("hf-cache", ""), HF_CACHE_LABEL, hf_hub_cache()),
                 (("torch-hub", ""), TORCH_HUB_LABEL, torch_hub_checkpoints())]
        for folder in folders:
            root = Path(folder).expanduser()
            specs.append((("folder", str(root)), root.name or str(root), root))
        out = {}
        for key, label, path in specs:
            if key in out:
                continue
            item = QTreeWidgetItem(self.tree, [label, "", "", "", str(path)])
            item.setData(0, _GROUP_ROLE, key)
            item.setFont(COL_NAME, bold)
            item.setToolTip(COL_NAME, str(path))
            out[key] = item
        return out

    def _row(self, group: QTreeWidgetItem, entry: Entry) -> QTreeWidgetItem:
        item = QTreeWidgetItem(group, [entry.name, "", DETECTING, human_size(entry.size_bytes), str(entry.path)])
        item.setData(0, _PATH_ROLE, str(entry.path))
        item.setTextAlignment(COL_SIZE, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setToolTip(COL_NAME, str(entry.path))
        item.setToolTip(COL_SIZE, f"{entry.size_bytes:,} bytes on disk")
        return item

    def _described_one(self, entry: Entry, description: Any) -> None:
        if isinstance(description, Exception):
            description = Description(None, "", None, f"{type(description).__name__}: {description}")
        self._described[(str(entry.path), entry.size_bytes)] = description
        item = self._items.get(str(entry.path))
        if item is not None:
            self._show(item, description)
        self._pending = max(0, self._pending - 1)
        self._update_status()
        if self._pending == 0:
            self.sigScanFinished.emit()

    @staticmethod
    def _show(item: QTreeWidgetItem, d: Description) -> None:
        item.setText(COL_FAMILY, FAMILY_NAMES.get(d.family or "", ""))
        path = item.data(0, _PATH_ROLE)
        if d.architecture:
            item.setText(COL_ARCH, d.architecture)
            tip = f"{d.architecture}\nread as a {d.source_format} checkpoint" if d.source_format else d.architecture
        else:
            item.setText(COL_ARCH, d.error or "")
            tip = ""
        if d.error:
            item.setForeground(COL_ARCH, _ERROR_BRUSH)
            tip = f"{tip}\n{d.error}" if tip else d.error
        item.setToolTip(COL_ARCH, tip)
        item.setToolTip(COL_PATH, path)

    def _update_status(self) -> None:
        n = len(self._items)
        found = f"{n} checkpoint{'s' if n != 1 else ''}"
        self.status.setText(f"{found}; detecting {self._pending}…" if self._pending else found)

    # -- opening ----------------------------------------------------------------------------

    def item_for(self, path: str | os.PathLike[str]) -> Optional[QTreeWidgetItem]:
        """The row of a listed checkpoint, None when it is not listed."""
        return self._items.get(os.fspath(path))

    def selected_path(self) -> Optional[str]:
        """The selected checkpoint's path; None when nothing, or a group, is selected."""
        items = self.tree.selectedItems()
        return items[0].data(0, _PATH_ROLE) if items else None

    def _selected_folder(self) -> Optional[str]:
        items = self.tree.selectedItems()
        item = items[0] if items else None
        while item is not None:
            key = item.data(0, _GROUP_ROLE)
            if key and key[0] == "folder":
                return key[1]
            item = item.parent()
        return None

    def open_selected(self) -> None:
        """The 'Open' button: emit :attr:`sigOpen` with the selected checkpoint."""
        path = self.selected_path()
        if path:
            self.sigOpen.emit(path)

    def _activated(self, item: QTreeWidgetItem, column: int) -> None:
        path = item.data(0, _PATH_ROLE)
        if path:
            self.sigOpen.emit(path)

    def _update_buttons(self) -> None:
        self.open_button.setEnabled(self.selected_path() is not None)
        self.remove_button.setEnabled(self._selected_folder() is not None)

    def shutdown(self) -> None:
        """Stop the worker threads now (the widget does it when destroyed); later scans run inline."""
        self._generation += 1
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
